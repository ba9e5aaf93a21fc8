//! `tiermesh bench federated`: the federated-queries issue's benchmark. A real 77-node mesh in
//! one process (1 national, 4 provinces, 8 prefectures, 64 counties, built like `tiermesh demo`
//! builds its mesh), generated households spread evenly over the counties, each county importing
//! its own files before the mesh starts; then six national queries signed under a grant and sent
//! exactly as `tiermesh query --connect` sends them, timed at the client. `--json` writes the
//! medians and the full answers for `bench/federated_compare.py`, which checks them against
//! DuckDB on the same CSV files. Figures only mean something from a release build.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::date::Date;
use tiermesh_federation::grant::{sign_request, Grant, QueryRequest};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;
use tiermesh_federation::wire::{FederatedAnswer, Message, Role};
use tiermesh_storage::StoreOptions;

use crate::client::load_key;
use crate::demo::{self, DemoNode, Nodes};
use crate::raft_driver::TICK_MS_DEFAULT;
use crate::{gen, grant_cli, import, mesh_cli};

/// Province codes (first two digits) of the benchmark mesh: Guizhou, Yunnan, Sichuan, Guangxi.
pub const PROVINCE_NUMBERS: [u64; 4] = [52, 53, 51, 45];
/// Prefectures under each province.
pub const PREFECTURES_PER_PROVINCE: u64 = 2;
/// Counties under each prefecture.
pub const COUNTIES_PER_PREFECTURE: u64 = 8;
/// Untimed runs of each query before the timed ones (connections and caches warm up).
pub const WARMUP_RUNS: usize = 2;
/// Deadline a benchmark query gives the mesh.
pub const QUERY_DEADLINE_MS: u64 = 30_000;
/// How much longer than the query's deadline the client waits for the entry node's answer.
pub const ANSWER_GRACE_MS: u64 = 2_000;
/// The benchmark grant's minimum cell size: nothing is suppressed, so every answer can be
/// compared with DuckDB's exactly.
pub const MIN_CELL: u32 = 1;
/// Validity of the benchmark grant.
pub const GRANT_VALID_DAYS: u64 = 1;
/// Memtable size per column family of each node's store: 77 stores share one process, and
/// RocksDB's 128 MiB default would keep every county's rows in memory twice.
pub const WRITE_BUFFER_BYTES: usize = 8 << 20;
/// Counties generated at once (the generator is single-threaded per county).
pub const GENERATOR_THREADS_MAX: usize = 4;
/// Share of the sorted samples at or below the tail figure.
const TAIL_FRACTION: f64 = 0.9;

/// The benchmark queries (name, title, SQL); `{prefecture}` is replaced by the 4-digit prefix of
/// the first prefecture.
pub const QUERIES: [(&str, &str, &str); 6] = [
    (
        "Q1",
        "households and members by cause (poor, returned, monitored)",
        "SELECT cause, COUNT(*), SUM(members) FROM households \
         WHERE status IN ('poor','returned','monitored') GROUP BY cause",
    ),
    (
        "Q2",
        "AVG and MAX income by province and status",
        "SELECT province(region_code), status, AVG(income_per_capita), MAX(income_per_capita) \
         FROM households GROUP BY province(region_code), status",
    ),
    (
        "Q3",
        "persons by gender and 10-year age band",
        "SELECT gender, age_band(birth_date, 10), COUNT(*) FROM persons \
         GROUP BY gender, age_band(birth_date, 10)",
    ),
    (
        "Q4",
        "idle full labour in relocated households, by county (join)",
        "SELECT county(region_code), COUNT(*) FROM persons JOIN households USING (household_id) \
         WHERE labor = 'full' AND employed = false AND relocated = true \
         GROUP BY county(region_code)",
    ),
    (
        "Q5",
        "exited households below 4000 yuan, by county",
        "SELECT county(region_code), COUNT(*) FROM households \
         WHERE status = 'exited' AND income_per_capita < 4000 GROUP BY county(region_code)",
    ),
    (
        "Q6",
        "one prefecture by township",
        "SELECT township(region_code), COUNT(*), AVG(income_per_capita) FROM households \
         WHERE region_code LIKE '{prefecture}%' GROUP BY township(region_code)",
    ),
];

/// Options of `tiermesh bench federated`.
#[derive(clap::Args, Debug, Clone)]
pub struct FederatedOptions {
    /// Households in all, spread evenly over the 64 counties.
    #[arg(long, default_value_t = 3_000_000)]
    pub households: u64,
    /// Timed runs of each query (after 2 warm-up runs).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Seed of the generated data (county i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Working folder, kept afterwards: DIR/data (the CSV files, for DuckDB), DIR/nodes, keys and
    /// grant. Its nodes, keys and (unless --data points there) data are replaced. Default: a
    /// temporary folder, removed at the end.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Reuse an already generated data folder (DATA/<6-digit county>/{households,persons}.csv
    /// for each of the 64 counties) instead of generating.
    #[arg(long, value_name = "DATA")]
    pub data: Option<PathBuf>,
    /// Write the medians, p90s and full answers as JSON (for bench/federated_compare.py).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Raft tick of every node, in milliseconds.
    #[arg(long, default_value_t = TICK_MS_DEFAULT)]
    pub tick_ms: u64,
    /// Put every node's audit log under AUDIT/<node name> instead of its node directory. On
    /// one machine the 77 nodes' audit fsyncs queue on one disk (about 0.7 ms each here), which
    /// no deployment shares; `--audit-dir /dev/shm/...` shows the mesh without that queue.
    #[arg(long, value_name = "AUDIT")]
    pub audit_dir: Option<PathBuf>,
    /// Run only these queries (by name, e.g. `--only Q1,Q5`); default: all six.
    #[arg(long, value_delimiter = ',', value_name = "QUERY")]
    pub only: Vec<String>,
}

/// The regions of the benchmark mesh below the national root: provinces in `PROVINCE_NUMBERS`
/// order, the regions under each in code order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub provinces: Vec<RegionCode>,
    pub prefectures: Vec<RegionCode>,
    pub counties: Vec<RegionCode>,
}

impl Topology {
    /// `PREFECTURES_PER_PROVINCE` prefectures under each of `PROVINCE_NUMBERS`, and
    /// `COUNTIES_PER_PREFECTURE` counties under each, numbered from 01 as `tiermesh gen` numbers
    /// the children of a region.
    pub fn build() -> Result<Topology> {
        let code = |value: u64| {
            RegionCode::from_u64(value).map_err(|error| anyhow!("region {value:012}: {error}"))
        };
        let provinces: Vec<RegionCode> = PROVINCE_NUMBERS
            .iter()
            .map(|number| code(number * 10_000_000_000))
            .collect::<Result<_>>()?;
        let mut prefectures = Vec::new();
        let mut counties = Vec::new();
        for province in &provinces {
            for prefecture_number in 1..=PREFECTURES_PER_PROVINCE {
                let prefecture = code(province.value() + prefecture_number * 100_000_000)?;
                prefectures.push(prefecture);
                for county_number in 1..=COUNTIES_PER_PREFECTURE {
                    counties.push(code(prefecture.value() + county_number * 1_000_000)?);
                }
            }
        }
        Ok(Topology {
            provinces,
            prefectures,
            counties,
        })
    }

    /// Nodes in all, the national one included.
    pub fn nodes(&self) -> usize {
        1 + self.provinces.len() + self.prefectures.len() + self.counties.len()
    }

    /// The nodes a query with this plan reaches: every node whose region can hold a row its
    /// filter lets through (the fan-out skips the others), the national node always.
    pub fn nodes_asked(&self, plan: &tiermesh_federation::query::Plan) -> usize {
        let Some(ranges) = plan
            .filter
            .as_ref()
            .and_then(tiermesh_federation::fanout::filter_region_ranges)
        else {
            return self.nodes();
        };
        let overlaps = |region: &RegionCode| {
            let (first, last) = region.value_range();
            ranges
                .iter()
                .any(|(low, high)| *low <= last && first <= *high)
        };
        1 + self
            .provinces
            .iter()
            .chain(&self.prefectures)
            .chain(&self.counties)
            .filter(|region| overlaps(region))
            .count()
    }
}

/// `total` households spread over `counties`: equal shares, the first ones taking one more
/// until the remainder is used up.
pub fn shares(total: u64, counties: usize) -> Vec<u64> {
    let counties_u64 = counties as u64;
    (0..counties_u64)
        .map(|index| total / counties_u64 + u64::from(index < total % counties_u64))
        .collect()
}

/// The `fraction` point of the samples (nearest rank), in milliseconds.
fn percentile_ms(samples: &[Duration], fraction: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    assert!(!sorted.is_empty(), "a percentile of no samples");
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// The median: the middle sample, or the mean of the two middle ones.
fn median_ms(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    assert!(!sorted.is_empty(), "a median of no samples");
    let middle = sorted.len() / 2;
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1e3;
    if sorted.len() % 2 == 1 {
        milliseconds(sorted[middle])
    } else {
        (milliseconds(sorted[middle - 1]) + milliseconds(sorted[middle])) / 2.0
    }
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_resident_mib() -> Result<f64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|number| number.trim().parse::<u64>().ok())
        .context("no VmHWM line in /proc/self/status")?;
    Ok(kib as f64 / 1024.0)
}

/// The CSV files of one county in a data folder.
fn county_files(data: &Path, county: RegionCode) -> [PathBuf; 2] {
    let folder = data.join(&county.to_string()[..6]);
    [folder.join("households.csv"), folder.join("persons.csv")]
}

/// Removes `path` (a file or a folder) if it exists.
fn clear(path: &Path) -> Result<()> {
    let outcome = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match outcome {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Generates every county's files into `data`, a few counties at once; returns (households,
/// persons).
fn generate(
    data: &Path,
    topology: &Topology,
    options: &FederatedOptions,
    today: Date,
) -> Result<(u64, u64)> {
    let shares = shares(options.households, topology.counties.len());
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64));
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, GENERATOR_THREADS_MAX);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(county) = topology.counties.get(index) else {
                            return Ok(());
                        };
                        let summary = gen::generate(&gen::GenOptions {
                            region: *county,
                            households: shares[index],
                            seed: options.seed.wrapping_add(index as u64),
                            out: data.to_path_buf(),
                            today,
                        })
                        .with_context(|| format!("generating data for county {county}"))?;
                        let mut totals = totals
                            .lock()
                            .map_err(|_| anyhow!("a generator thread panicked"))?;
                        totals.0 += summary.households;
                        totals.1 += summary.persons;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|worker| worker.join().map_err(|_| anyhow!("a generator panicked"))?)
    })?;
    let totals = *totals
        .lock()
        .map_err(|_| anyhow!("a generator thread panicked"))?;
    Ok(totals)
}

/// What the imports stored.
#[derive(Default)]
struct Imported {
    households: u64,
    persons: u64,
    warnings: u64,
    bytes: u64,
}

/// Each county node imports its own two files into its store (opened with the benchmark's
/// options and kept open for the node's start).
fn import_counties(nodes: &mut Nodes, data: &Path, today: Date) -> Result<Imported> {
    let store_options = StoreOptions {
        write_buffer_bytes: WRITE_BUFFER_BYTES,
        ..StoreOptions::default()
    };
    let mut imported = Imported::default();
    for node in &mut nodes.counties {
        let files = county_files(data, node.region);
        for file in &files {
            let metadata = std::fs::metadata(file).with_context(|| {
                format!(
                    "county {}: {} (expected <data>/<6-digit county>/households.csv and \
                     persons.csv for each county of the benchmark mesh)",
                    node.region,
                    file.display(),
                )
            })?;
            imported.bytes += metadata.len();
        }
        let store = Arc::new(Mutex::new(node.dir.open_store(&store_options)?));
        node.store = Some(Arc::clone(&store));
        let mut store = store
            .lock()
            .map_err(|_| anyhow!("the store of {} is poisoned", node.name))?;
        let report_dir = node.dir.path.join("import-reports");
        let report = import::import(
            &mut store,
            node.region,
            &import::ImportOptions {
                files: files.to_vec(),
                dry_run: false,
                today,
                as_of: today,
                report_dir: Some(report_dir.clone()),
                progress: false,
                log_commits: false,
                batch_rows: import::BATCH_ROWS_DEFAULT,
            },
        )
        .with_context(|| format!("importing into {}", node.name))?;
        if report.rejected() > 0 {
            bail!(
                "{}: {} rows rejected (reports in {}); DuckDB would load them, so the answers \
                 could not be compared",
                node.name,
                report.rejected(),
                report_dir.display()
            );
        }
        let stored_of = |table: Table| -> u64 {
            report
                .files
                .iter()
                .filter(|file| file.table == Some(table))
                .map(|file| file.stored)
                .sum()
        };
        imported.households += stored_of(Table::Households);
        imported.persons += stored_of(Table::Persons);
        imported.warnings += report.warnings();
    }
    Ok(imported)
}

/// Key and grant files of the benchmark.
struct Credentials {
    officer: PathBuf,
    staff: PathBuf,
    grant: PathBuf,
}

/// One query's figures and last answer.
struct Measured {
    name: &'static str,
    title: &'static str,
    sql: String,
    /// Request sent to answer received.
    samples: Vec<Duration>,
    /// Connection, request and close.
    whole_samples: Vec<Duration>,
    answer: FederatedAnswer,
}

/// Runs the benchmark and prints its figures.
pub fn run(options: &FederatedOptions) -> Result<()> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if let Some(unknown) = options
        .only
        .iter()
        .find(|name| !QUERIES.iter().any(|(known, _, _)| known == name))
    {
        let names: Vec<&str> = QUERIES.iter().map(|(name, _, _)| *name).collect();
        bail!(
            "--only {unknown}: no such query; the queries are {}",
            names.join(", ")
        );
    }
    if let Some(audit) = &options.audit_dir {
        if std::fs::read_dir(audit).is_ok_and(|mut entries| entries.next().is_some()) {
            bail!(
                "--audit-dir {} is not empty; give a new folder (the nodes' keys are new)",
                audit.display()
            );
        }
    }
    crate::init_logging("error");
    let topology = Topology::build()?;
    if options.data.is_none() && options.households < topology.counties.len() as u64 {
        bail!(
            "--households {} is fewer than the {} counties; give at least one per county",
            options.households,
            topology.counties.len()
        );
    }
    let temporary;
    let root = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.canonicalize()
                .with_context(|| format!("resolving {}", dir.display()))?
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("tiermesh-bench-federated-")
                .tempdir()
                .context("creating a temporary folder")?;
            temporary.path().to_path_buf()
        }
    };
    let today = crate::today();
    let credentials = Credentials {
        officer: root.join("officer.key"),
        staff: root.join("staff.key"),
        grant: root.join("bench.grant"),
    };
    let nodes_root = root.join("nodes");
    for path in [
        &credentials.officer,
        &credentials.staff,
        &credentials.grant,
        &nodes_root,
    ] {
        clear(path)?;
    }
    println!(
        "TierMesh federated benchmark: 1 national, {} provinces, {} prefectures, {} counties \
         ({} nodes) on 127.0.0.1; folder {}{}",
        topology.provinces.len(),
        topology.prefectures.len(),
        topology.counties.len(),
        topology.nodes(),
        root.display(),
        if options.dir.is_some() {
            ""
        } else {
            " (removed at the end)"
        }
    );

    let data = match &options.data {
        Some(data) => {
            let data = data
                .canonicalize()
                .with_context(|| format!("--data {}", data.display()))?;
            println!("data: reusing {}", data.display());
            data
        }
        None => {
            let data = root.join("data");
            clear(&data)?;
            let started = Instant::now();
            let (households, persons) = generate(&data, &topology, options, today)?;
            println!(
                "generated {households} households + {persons} persons for {} counties in \
                 {:.1} s",
                topology.counties.len(),
                started.elapsed().as_secs_f64()
            );
            data
        }
    };

    let init = |code: RegionCode| {
        let mut node = DemoNode::init(&nodes_root, demo::name_of(code, &[]), code)?;
        if let Some(audit) = &options.audit_dir {
            node.audit_dir = Some(audit.join(&node.name));
        }
        Ok::<_, anyhow::Error>(node)
    };
    let mut nodes = Nodes {
        national: init(RegionCode::NATIONAL)?,
        provinces: topology
            .provinces
            .iter()
            .map(|code| init(*code))
            .collect::<Result<_>>()?,
        prefectures: topology
            .prefectures
            .iter()
            .map(|code| init(*code))
            .collect::<Result<_>>()?,
        counties: topology
            .counties
            .iter()
            .map(|code| init(*code))
            .collect::<Result<_>>()?,
    };

    let started = Instant::now();
    let imported = import_counties(&mut nodes, &data, today)?;
    let import_seconds = started.elapsed().as_secs_f64();
    let rows = imported.households + imported.persons;
    println!(
        "import: {} households + {} persons ({:.0} MiB of CSV, {} warnings, 0 rejected) into {} \
         county stores in {import_seconds:.1} s = {:.0} rows/s",
        imported.households,
        imported.persons,
        imported.bytes as f64 / 1_048_576.0,
        imported.warnings,
        nodes.counties.len(),
        rows as f64 / import_seconds
    );

    mesh_cli::keygen(&credentials.officer)?;
    let staff_key = mesh_cli::keygen(&credentials.staff)?;
    let officer = load_key(&credentials.officer)?;
    mesh_cli::create(
        &nodes.national.dir.path,
        officer.public_key(),
        &nodes.national.addr.to_string(),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(demo::WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let measured = runtime.block_on(async {
        let outcome = bench(
            &mut nodes,
            &topology,
            &officer,
            staff_key,
            &credentials,
            options,
            today,
        )
        .await;
        let mut stopped = Ok(());
        // Leaves first, the voters last.
        let mut all: Vec<&mut DemoNode> = nodes.all_mut().collect();
        all.reverse();
        for node in all {
            let result = node.stop().await;
            if stopped.is_ok() {
                stopped = result;
            }
        }
        let measured = outcome?;
        stopped.map(|()| measured)
    })?;
    drop(runtime);

    println!("{}", figures_table(&measured));
    println!(
        "latency at the client, median and p90 of {} runs after {WARMUP_RUNS} warm-up runs: \
         from sending the signed query to receiving the released answer; \"with connect + \
         close\" adds what `tiermesh query --connect` also pays (a new QUIC connection to the \
         national node and its clean close). As of {today}; grant min cell {MIN_CELL}: nothing \
         is suppressed, so the answers compare exactly with DuckDB's",
        options.runs
    );
    let peak = peak_resident_mib()?;
    println!("peak resident memory (VmHWM): {peak:.0} MiB");

    if let Some(path) = &options.json {
        let document = json_document(&measured, &data, today, options, &imported, peak);
        let text = serde_json::to_string_pretty(&document).context("encoding the JSON")?;
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("answers and figures written to {}", path.display());
    }
    Ok(())
}

/// Mesh set-up, grant, timed queries. Leaves the nodes running.
async fn bench(
    nodes: &mut Nodes,
    topology: &Topology,
    officer: &SigningKey,
    staff_key: PublicKey,
    credentials: &Credentials,
    options: &FederatedOptions,
    today: Date,
) -> Result<Vec<Measured>> {
    let started = Instant::now();
    let (status, _) = demo::start_mesh(
        nodes,
        officer,
        &demo::GrantPlan {
            officer_file: &credentials.officer,
            audience: staff_key,
            min_cell: MIN_CELL,
            valid_days: GRANT_VALID_DAYS,
            depth: 0,
            out: &credentials.grant,
        },
        options.tick_ms,
    )
    .await
    .context("starting the benchmark mesh")?;
    let voters = status
        .nodes
        .iter()
        .filter(|node| node.role == Role::Voter)
        .count();
    println!(
        "mesh: {} nodes up and in step in {:.1} s ({voters} voters, {} learners)",
        status.nodes.len(),
        started.elapsed().as_secs_f64(),
        status.nodes.len() - voters,
    );

    let prefecture = topology
        .prefectures
        .first()
        .context("the topology has no prefecture")?
        .prefix();
    let staff = load_key(&credentials.staff)?;
    let grant = grant_cli::read_grant(&credentials.grant)?;
    let mut measured = Vec::with_capacity(QUERIES.len());
    let chosen = QUERIES.into_iter().filter(|(name, _, _)| {
        options.only.is_empty() || options.only.iter().any(|only| only == name)
    });
    for (name, title, sql) in chosen {
        let sql = sql.replace("{prefecture}", &prefecture);
        let expected_regions = topology.nodes_asked(
            &tiermesh_federation::query::plan(&sql, today)
                .with_context(|| format!("{name}: planning {sql}"))?,
        );
        let mut samples = Vec::with_capacity(options.runs);
        let mut whole_samples = Vec::with_capacity(options.runs);
        let mut first: Option<FederatedAnswer> = None;
        for run in 0..WARMUP_RUNS + options.runs {
            let timed = timed_query(&nodes.national, &staff, &grant, &sql, today)
                .await
                .with_context(|| format!("{name} ({sql})"))?;
            check_answer(name, &timed.answer, expected_regions)?;
            if run >= WARMUP_RUNS {
                samples.push(timed.answered);
                whole_samples.push(timed.whole);
            }
            match &first {
                None => first = Some(timed.answer),
                Some(first) if first.result.rows != timed.answer.result.rows => {
                    bail!("{name}: run {} answered differently from run 1", run + 1)
                }
                Some(_) => {}
            }
        }
        let answer = first.context("no run")?;
        measured.push(Measured {
            name,
            title,
            sql,
            samples,
            whole_samples,
            answer,
        });
    }
    Ok(measured)
}

/// One query's answer and client-side times.
struct Timed {
    answer: FederatedAnswer,
    /// From sending the signed request to receiving the released answer.
    answered: Duration,
    /// The whole `tiermesh query --connect` exchange: QUIC connection, request, clean close.
    whole: Duration,
}

/// Sends one federated query to the entry node as `tiermesh query --connect` does (a new QUIC
/// connection, the request signed by the grant's audience, a clean close), timing the request on
/// its own and the whole exchange.
async fn timed_query(
    entry: &DemoNode,
    key: &SigningKey,
    grant: &Grant,
    sql: &str,
    as_of: Date,
) -> Result<Timed> {
    let started = Instant::now();
    let session = entry.session(key).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let mut query_id = [0u8; 16];
    query_id[..8].copy_from_slice(&crate::random_u64()?.to_be_bytes());
    query_id[8..].copy_from_slice(&crate::random_u64()?.to_be_bytes());
    let request = sign_request(
        key,
        QueryRequest {
            query_id,
            sql: sql.to_string(),
            as_of,
            deadline_ms: now_ms + QUERY_DEADLINE_MS,
            entry_node: entry.public_key,
            issued_at: now_ms / 1000,
            grant: grant.clone(),
        },
    );
    let message = Message::ClientQuery(Box::new(request));
    let sent = Instant::now();
    let reply = session
        .request_with_timeout(&message, QUERY_DEADLINE_MS + ANSWER_GRACE_MS)
        .await;
    let answered = sent.elapsed();
    session.close().await;
    let whole = started.elapsed();
    let answer = match reply? {
        Message::QueryAnswer(answer) => *answer,
        Message::Error { message } => bail!("the entry node answered: {message}"),
        other => bail!("unexpected answer {other:?}"),
    };
    Ok(Timed {
        answer,
        answered,
        whole,
    })
}

/// Fails unless every region the query reaches answered and no cell was withheld.
fn check_answer(name: &str, answer: &FederatedAnswer, expected_regions: usize) -> Result<()> {
    let coverage = &answer.coverage;
    if !coverage.missing.is_empty() || coverage.answered.len() != expected_regions {
        let missing: Vec<String> = coverage
            .missing
            .iter()
            .map(|(region, reason)| format!("{region}: {reason:?}"))
            .collect();
        bail!(
            "{name}: coverage incomplete: {} of {expected_regions} regions answered; missing: {}",
            coverage.answered.len(),
            if missing.is_empty() {
                "none reported".to_string()
            } else {
                missing.join("; ")
            }
        );
    }
    if answer.suppressed_primary + answer.suppressed_secondary > 0 {
        bail!(
            "{name}: {} cells suppressed under min cell {MIN_CELL}",
            answer.suppressed_primary + answer.suppressed_secondary
        );
    }
    Ok(())
}

fn figures_table(measured: &[Measured]) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "query",
        "median ms",
        "p90 ms",
        "with connect + close ms",
        "rows scanned",
        "groups",
        "coverage",
    ]);
    for query in measured {
        let coverage = &query.answer.coverage;
        table.add_row([
            format!("{} {}", query.name, query.title),
            format!("{:.1}", median_ms(&query.samples)),
            format!("{:.1}", percentile_ms(&query.samples, TAIL_FRACTION)),
            format!("{:.1}", median_ms(&query.whole_samples)),
            query.answer.result.rows_scanned.to_string(),
            query.answer.result.rows.len().to_string(),
            format!(
                "{} answered, {} missing",
                coverage.answered.len(),
                coverage.missing.len()
            ),
        ]);
    }
    for column in 1..=5 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    table
}

fn json_document(
    measured: &[Measured],
    data: &Path,
    today: Date,
    options: &FederatedOptions,
    imported: &Imported,
    peak_resident_mib: f64,
) -> serde_json::Value {
    let queries: Vec<serde_json::Value> = measured
        .iter()
        .map(|query| {
            let result = &query.answer.result;
            let rows: Vec<Vec<serde_json::Value>> = result
                .rows
                .iter()
                .map(|row| row.iter().map(crate::output::json_value).collect())
                .collect();
            serde_json::json!({
                "name": query.name,
                "title": query.title,
                "sql": query.sql,
                "median_ms": median_ms(&query.samples),
                "p90_ms": percentile_ms(&query.samples, TAIL_FRACTION),
                "samples_ms": query.samples.iter().map(|sample| sample.as_secs_f64() * 1e3).collect::<Vec<_>>(),
                "with_connect_median_ms": median_ms(&query.whole_samples),
                "rows_scanned": result.rows_scanned,
                "answered": query.answer.coverage.answered.len(),
                "missing": query.answer.coverage.missing.len(),
                "columns": result.columns,
                "rows": rows,
            })
        })
        .collect();
    serde_json::json!({
        "as_of": today.to_string(),
        "data": data.display().to_string(),
        "households": imported.households,
        "persons": imported.persons,
        "runs": options.runs,
        "warmup_runs": WARMUP_RUNS,
        "min_cell": MIN_CELL,
        "peak_resident_mib": peak_resident_mib,
        "queries": queries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiermesh_federation::region::Tier;

    #[test]
    fn the_topology_is_77_nodes_each_under_its_parent() {
        let topology = Topology::build().expect("topology");
        assert_eq!(
            (
                topology.provinces.len(),
                topology.prefectures.len(),
                topology.counties.len(),
                topology.nodes()
            ),
            (4, 8, 64, 77)
        );
        assert!(topology.provinces.iter().all(
            |code| code.tier() == Tier::Province && code.parent() == Some(RegionCode::NATIONAL)
        ));
        for prefecture in &topology.prefectures {
            assert_eq!(prefecture.tier(), Tier::Prefecture);
            let parent = prefecture.parent().expect("a parent");
            assert!(topology.provinces.contains(&parent), "{prefecture}");
        }
        for county in &topology.counties {
            assert_eq!(county.tier(), Tier::County);
            let parent = county.parent().expect("a parent");
            assert!(topology.prefectures.contains(&parent), "{county}");
        }
        let distinct: std::collections::BTreeSet<RegionCode> =
            topology.counties.iter().copied().collect();
        assert_eq!(distinct.len(), 64);
        assert_eq!(topology.counties[0].to_string(), "520101000000");
        assert_eq!(topology.prefectures[0].prefix(), "5201");
    }

    #[test]
    fn shares_are_even_and_sum_to_the_total() {
        assert_eq!(shares(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(shares(3_000_000, 64), vec![46_875; 64]);
        assert_eq!(shares(65, 64).iter().sum::<u64>(), 65);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(median_ms(&samples), 5.5);
        assert_eq!(percentile_ms(&samples, TAIL_FRACTION), 9.0);
        assert_eq!(percentile_ms(&samples[..1], TAIL_FRACTION), 1.0);
    }
}
