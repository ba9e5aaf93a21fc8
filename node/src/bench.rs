//! `tiermesh bench local`: one node's import throughput and local query latency, on generated data.
//! Figures only mean something from a release build (`cargo run --release -- bench local`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tiermesh_federation::region::RegionCode;
use tiermesh_storage::StoreOptions;

use crate::config::NodeDir;
use crate::gen::{generate, GenOptions};
use crate::import::{import, ImportOptions};

/// The local queries timed by the benchmark (the first is the foundation issue's target).
pub const LOCAL_QUERIES: [(&str, &str); 6] = [
    (
        "Q1 poor households by cause",
        "SELECT cause, COUNT(*), SUM(members) FROM households \
         WHERE status IN ('poor','returned','monitored') GROUP BY cause",
    ),
    (
        "Q2 income by county and status",
        "SELECT county(region_code), status, AVG(income_per_capita), MAX(income_per_capita) \
         FROM households GROUP BY county(region_code), status",
    ),
    (
        "Q3 persons by gender and age band",
        "SELECT gender, age_band(birth_date, 10), COUNT(*) FROM persons \
         GROUP BY gender, age_band(birth_date, 10)",
    ),
    (
        "Q4 idle full labour in relocated households",
        "SELECT county(region_code), COUNT(*) FROM persons JOIN households USING (household_id) \
         WHERE labor = 'full' AND employed = false AND relocated = true GROUP BY county(region_code)",
    ),
    (
        "Q5 exited below the line",
        "SELECT county(region_code), COUNT(*) FROM households \
         WHERE status = 'exited' AND income_per_capita < 4000 GROUP BY county(region_code)",
    ),
    (
        "Q6 townships of one county",
        "SELECT township(region_code), COUNT(*), AVG(income_per_capita) FROM households \
         WHERE region_code LIKE '520102%' GROUP BY township(region_code)",
    ),
];

/// Options of `tiermesh bench local`.
#[derive(clap::Args, Debug, Clone)]
pub struct LocalOptions {
    /// Households to generate (persons follow at about 3.27 per household).
    #[arg(long, default_value_t = 3_000_000)]
    pub households: u64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The node's region; the data is generated inside it.
    #[arg(long, default_value = "520000000000")]
    pub region: String,
    /// Working folder (data and node); a fresh temporary folder when omitted.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Timed runs of each query.
    #[arg(long, default_value_t = 21)]
    pub runs: usize,
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Runs the benchmark and prints its figures.
pub fn local(options: &LocalOptions) -> Result<()> {
    let region: RegionCode = options
        .region
        .parse()
        .with_context(|| format!("--region '{}'", options.region))?;
    let temporary;
    let root = match &options.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("creating a temporary folder")?;
            temporary.path().to_path_buf()
        }
    };
    let today = crate::today();
    let data = root.join("data");
    let node_dir = root.join("node");
    if node_dir.exists() {
        std::fs::remove_dir_all(&node_dir)
            .with_context(|| format!("clearing {}", node_dir.display()))?;
    }
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("clearing {}", data.display()))?;
    }

    let started = Instant::now();
    let generated = generate(&GenOptions {
        region,
        households: options.households,
        seed: options.seed,
        out: data.clone(),
        today,
    })?;
    let gen_time = started.elapsed();
    println!(
        "generated {} households + {} persons in {} counties: {:.1} s",
        generated.households,
        generated.persons,
        generated.counties.len(),
        gen_time.as_secs_f64()
    );

    let node = NodeDir::init(&node_dir, region, Some("bench"))?;
    let mut files = Vec::new();
    for (county, _, _) in &generated.counties {
        let folder = data.join(format!("{:06}", county.value() / 1_000_000));
        files.push(folder.join("households.csv"));
        files.push(folder.join("persons.csv"));
    }
    let bytes: u64 = files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    // The generated files are written back to disk before the clock starts, so that the
    // import is not charged for the generator's writeback.
    for path in &files {
        std::fs::File::open(path)
            .and_then(|file| file.sync_all())
            .with_context(|| format!("syncing {}", path.display()))?;
    }
    let mut store = node.open_store(&StoreOptions::default())?;
    let started = Instant::now();
    let report = import(
        &mut store,
        region,
        &ImportOptions {
            files,
            dry_run: false,
            today,
            as_of: today,
            report_dir: Some(root.join("reports")),
            progress: false,
            log_commits: false,
            batch_rows: crate::import::BATCH_ROWS_DEFAULT,
        },
    )?;
    let import_time = started.elapsed();
    let rows = report.rows();
    println!(
        "import: {} rows ({:.0} MiB) in {:.2} s = {:.0} rows/s ({} stored, {} rejected, {} warnings)",
        rows,
        bytes as f64 / 1048576.0,
        import_time.as_secs_f64(),
        rows as f64 / import_time.as_secs_f64(),
        report.stored(),
        report.rejected(),
        report.warnings()
    );
    drop(store);

    let started = Instant::now();
    let store = node.open_store(&StoreOptions::default())?;
    let open_time = started.elapsed();
    let image = store.image();
    println!(
        "open + columnar image rebuild: {} households, {} persons in {:.2} s",
        image.households_len(),
        image.persons_len(),
        open_time.as_secs_f64()
    );

    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "query",
        "groups",
        "rows scanned",
        "median ms",
        "min ms",
        "rows/s",
    ]);
    for (name, sql) in LOCAL_QUERIES {
        let plan = tiermesh_federation::query::plan(sql, today)
            .with_context(|| format!("planning {name}"))?;
        let mut samples = Vec::with_capacity(options.runs);
        let mut result = None;
        for _ in 0..options.runs.max(1) {
            let started = Instant::now();
            let answer = tiermesh_federation::query::execute(&plan, image);
            samples.push(started.elapsed());
            result = Some(answer);
        }
        let minimum = samples.iter().min().copied().unwrap_or_default();
        let middle = median(samples);
        let result = result.context("no run")?;
        table.add_row([
            name.to_string(),
            result.rows.len().to_string(),
            result.rows_scanned.to_string(),
            format!("{:.2}", middle.as_secs_f64() * 1e3),
            format!("{:.2}", minimum.as_secs_f64() * 1e3),
            format!("{:.0}", result.rows_scanned as f64 / middle.as_secs_f64()),
        ]);
    }
    println!("{table}");
    if let Some(peak) = peak_rss_mib() {
        println!("peak resident memory: {peak} MiB");
    }
    Ok(())
}
