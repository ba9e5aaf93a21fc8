//! `tiermesh demo`: a real local mesh in one process. A national node, provinces, prefectures and
//! counties, each with its own data directory (RocksDB) and QUIC port on 127.0.0.1; the national
//! node and two provinces are Raft voters, every other node a learner. Every county imports its
//! own rows (generated, or `--data DIR`); an officer key registers the nodes and issues a national
//! grant to a staff key, and example national queries run through the mesh like
//! `tiermesh query --connect` does. `--serve` keeps the mesh up and prints the commands to query
//! it from another terminal.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::meta::{sign_registration, MetaCommand, NodeRegistration};
use tiermesh_federation::region::{RegionCode, Tier};
use tiermesh_federation::schema::Table;
use tiermesh_federation::wire::{MeshStatus, Message, Role};
use tiermesh_storage::{Store, StoreOptions};

use crate::client::{load_key, Session};
use crate::config::NodeDir;
use crate::mesh::{self, RunOptions, RunningNode};
use crate::output::Format;
use crate::raft_driver::TICK_MS_DEFAULT;
use crate::{gen, grant_cli, import, mesh_cli, mesh_cli::render_status};

/// Deadline for a mesh condition (roles, every node caught up).
pub const CONDITION_DEADLINE_MS: u64 = 60_000;
/// Pause between two status polls.
pub const POLL_MS: u64 = 50;
/// Deadline a federated example query gives the mesh.
pub const QUERY_DEADLINE_MS: u64 = 5_000;
/// Worker threads of the runtime that carries every node's networking.
pub const WORKER_THREADS: usize = 4;

/// The counties of the generated demo (code, name); their prefectures and provinces follow from
/// the codes.
pub const DEMO_COUNTIES: [(u64, &str); 8] = [
    (520_102, "nanming"),
    (520_103, "yunyan"),
    (520_111, "huaxi"),
    (520_201, "zhongshan"),
    (520_203, "liuzhi"),
    (530_102, "wuhua"),
    (530_103, "panlong"),
    (530_111, "guandu"),
];

/// Names of the provinces and prefectures above the demo counties.
const KNOWN_NAMES: [(u64, &str); 5] = [
    (520_000_000_000, "guizhou"),
    (530_000_000_000, "yunnan"),
    (520_100_000_000, "guiyang"),
    (520_200_000_000, "liupanshui"),
    (530_100_000_000, "kunming"),
];

/// The example national queries (title, SQL).
pub const EXAMPLE_QUERIES: [(&str, &str); 5] = [
    (
        "poor, returned and monitored households by cause",
        "SELECT cause, COUNT(*), SUM(members) FROM households \
         WHERE status IN ('poor','returned','monitored') GROUP BY cause ORDER BY 2 DESC",
    ),
    (
        "average income per capita by province and status",
        "SELECT province(region_code), status, COUNT(*), AVG(income_per_capita) \
         FROM households GROUP BY province(region_code), status \
         ORDER BY province(region_code), status",
    ),
    (
        "persons by gender and 10-year age band",
        "SELECT gender, age_band(birth_date, 10), COUNT(*) FROM persons \
         GROUP BY gender, age_band(birth_date, 10) ORDER BY gender, age_band(birth_date, 10)",
    ),
    (
        "exited households below the 4000-yuan line, by county",
        "SELECT county(region_code), COUNT(*), AVG(income_per_capita) FROM households \
         WHERE status = 'exited' AND income_per_capita < 4000 \
         GROUP BY county(region_code) ORDER BY county(region_code)",
    ),
    (
        "idle full labour in relocated households, by prefecture (a join)",
        "SELECT prefecture(region_code), COUNT(*) FROM persons JOIN households USING (household_id) \
         WHERE labor = 'full' AND employed = false AND relocated = true \
         GROUP BY prefecture(region_code) ORDER BY prefecture(region_code)",
    ),
];

/// Options of `tiermesh demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoOptions {
    /// Households generated for each of the 8 counties.
    #[arg(long, default_value_t = 2_000)]
    pub households_per_county: u64,
    /// Seed of the generated data (county i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load DIR/<6-digit county code>/{households,persons}.csv into county nodes built from those
    /// codes (with their prefecture and province nodes) instead of generating data.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Working folder for keys, grant and node directories (kept afterwards; it must not hold
    /// nodes yet). Default: a temporary folder, removed at the end.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the mesh running after the examples and print the commands to query it from another
    /// terminal; Ctrl-C stops it.
    #[arg(long)]
    pub serve: bool,
    /// Raft tick of every node, in milliseconds.
    #[arg(long, default_value_t = TICK_MS_DEFAULT)]
    pub tick_ms: u64,
}

/// One node of the demo.
pub(crate) struct DemoNode {
    pub(crate) name: String,
    pub(crate) region: RegionCode,
    pub(crate) dir: NodeDir,
    pub(crate) public_key: PublicKey,
    pub(crate) addr: SocketAddr,
    /// Opened before start (counties import into it); kept for as long as the node runs.
    pub(crate) store: Option<Arc<Mutex<Store>>>,
    pub(crate) running: Option<RunningNode>,
    /// Where the node's audit log goes; `None`: `DIR/audit` in its own directory.
    pub(crate) audit_dir: Option<PathBuf>,
    /// The port, held from `init` until `start`: the registry names it long before the node
    /// listens (counties import first), and another process must not take it meanwhile.
    reservation: Option<UdpSocket>,
}

impl DemoNode {
    pub(crate) fn init(nodes_root: &Path, name: String, region: RegionCode) -> Result<DemoNode> {
        let dir = NodeDir::init(&nodes_root.join(&name), region, Some(&name))?;
        let public_key = dir.signing_key()?.public_key();
        let (addr, reservation) = reserve_addr()?;
        Ok(DemoNode {
            name,
            region,
            dir,
            public_key,
            addr,
            store: None,
            running: None,
            audit_dir: None,
            reservation: Some(reservation),
        })
    }

    pub(crate) fn registration(&self) -> NodeRegistration {
        NodeRegistration {
            key: self.public_key,
            name: self.name.clone(),
            region: self.region,
            addr: self.addr.to_string(),
        }
    }

    /// Opens the store (once) for an import before the node starts.
    pub(crate) fn store(&mut self) -> Result<Arc<Mutex<Store>>> {
        if let Some(store) = &self.store {
            return Ok(Arc::clone(store));
        }
        let store = Arc::new(Mutex::new(self.dir.open_store(&StoreOptions::default())?));
        self.store = Some(Arc::clone(&store));
        Ok(store)
    }

    /// Starts the node. Call inside the runtime.
    pub(crate) fn start(
        &mut self,
        bootstrap_peers: Vec<(PublicKey, SocketAddr)>,
        tick_ms: u64,
    ) -> Result<()> {
        let store = self.store()?;
        let log = store
            .lock()
            .map_err(|_| anyhow!("the store of {} is poisoned", self.name))?
            .raft_log()?;
        // Let go of the port just before the node binds it.
        drop(self.reservation.take());
        let running = mesh::start(
            self.dir.signing_key()?,
            log,
            store,
            &RunOptions {
                listen: self.addr,
                bootstrap_peers,
                tick_ms,
                import: None,
                metrics: Default::default(),
                audit_dir: Some(
                    self.audit_dir
                        .clone()
                        .unwrap_or_else(|| self.dir.path.join(crate::audit_cli::AUDIT_FOLDER)),
                ),
            },
        )
        .with_context(|| format!("starting node {}", self.name))?;
        self.running = Some(running);
        Ok(())
    }

    pub(crate) async fn session(&self, key: &SigningKey) -> Result<Session> {
        Session::connect(key, &self.addr.to_string(), Some(self.public_key))
            .await
            .with_context(|| format!("connecting to node {}", self.name))
    }

    pub(crate) async fn stop(&mut self) -> Result<()> {
        let stopped = match self.running.take() {
            Some(running) => running
                .stop()
                .await
                .with_context(|| format!("stopping node {}", self.name)),
            None => Ok(()),
        };
        self.store = None;
        stopped
    }
}

/// Ports a local mesh listens on: below Linux's ephemeral range (32768 and up), so that the
/// client endpoints of nodes started earlier, which bind ephemeral ports, never take a port
/// chosen for a node that starts later.
pub(crate) const LOCAL_PORTS: std::ops::Range<u16> = 20_000..32_000;
/// Ports tried before giving up.
const LOCAL_PORT_TRIES: usize = 1_000;

/// A UDP port on 127.0.0.1 in `LOCAL_PORTS` that was free a moment ago.
pub(crate) fn free_addr() -> Result<SocketAddr> {
    Ok(reserve_addr()?.0)
}

/// A UDP port on 127.0.0.1 in `LOCAL_PORTS`, with the socket that holds it.
pub(crate) fn reserve_addr() -> Result<(SocketAddr, UdpSocket)> {
    for _ in 0..LOCAL_PORT_TRIES {
        let span = u64::from(LOCAL_PORTS.end - LOCAL_PORTS.start);
        let port = LOCAL_PORTS.start + (crate::random_u64()? % span) as u16;
        if let Ok(socket) = UdpSocket::bind(("127.0.0.1", port)) {
            let addr = socket
                .local_addr()
                .context("the local address of a UDP socket")?;
            return Ok((addr, socket));
        }
    }
    bail!(
        "no free UDP port on 127.0.0.1 in {}..{} after {LOCAL_PORT_TRIES} tries",
        LOCAL_PORTS.start,
        LOCAL_PORTS.end
    )
}

fn region(value: u64) -> Result<RegionCode> {
    RegionCode::from_u64(value).map_err(|error| anyhow!("region {value:012}: {error}"))
}

pub(crate) fn name_of(region: RegionCode, county_names: &[(RegionCode, String)]) -> String {
    if let Some((_, name)) = county_names.iter().find(|(code, _)| *code == region) {
        return name.clone();
    }
    if let Some((_, name)) = KNOWN_NAMES.iter().find(|(code, _)| *code == region.value()) {
        return (*name).to_string();
    }
    if region.tier() == Tier::National {
        return "national".to_string();
    }
    format!("{}-{}", region.tier().name(), region.prefix())
}

/// The demo's nodes by tier; every list in code order.
pub(crate) struct Nodes {
    pub(crate) national: DemoNode,
    pub(crate) provinces: Vec<DemoNode>,
    pub(crate) prefectures: Vec<DemoNode>,
    pub(crate) counties: Vec<DemoNode>,
}

impl Nodes {
    pub(crate) fn all(&self) -> impl Iterator<Item = &DemoNode> {
        std::iter::once(&self.national)
            .chain(&self.provinces)
            .chain(&self.prefectures)
            .chain(&self.counties)
    }

    pub(crate) fn all_mut(&mut self) -> impl Iterator<Item = &mut DemoNode> {
        std::iter::once(&mut self.national)
            .chain(&mut self.provinces)
            .chain(&mut self.prefectures)
            .chain(&mut self.counties)
    }
}

/// Where a county's rows come from.
enum Source {
    Generate { households: u64, seed: u64 },
    Files(Vec<PathBuf>),
}

/// The counties to build: code, name and source of rows.
fn counties(options: &DemoOptions) -> Result<Vec<(RegionCode, String, Source)>> {
    let Some(data) = &options.data else {
        if options.households_per_county == 0 {
            bail!("--households-per-county must be at least 1");
        }
        return DEMO_COUNTIES
            .iter()
            .zip(0u64..)
            .map(|((code, name), index)| {
                Ok((
                    region(code * 1_000_000)?,
                    (*name).to_string(),
                    Source::Generate {
                        households: options.households_per_county,
                        seed: options.seed.wrapping_add(index),
                    },
                ))
            })
            .collect();
    };
    let entries = std::fs::read_dir(data)
        .with_context(|| format!("reading the folder {}", data.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading the folder {}", data.display()))?;
        let folder = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !folder.is_dir() || name.len() != 6 || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let code = region(name.parse::<u64>()? * 1_000_000)
            .with_context(|| format!("folder {}", folder.display()))?;
        if code.tier() != Tier::County {
            eprintln!(
                "skipping {}: {} is a {} code, not a county's",
                folder.display(),
                name,
                code.tier()
            );
            continue;
        }
        let files: Vec<PathBuf> = ["households.csv", "persons.csv"]
            .iter()
            .map(|file| folder.join(file))
            .filter(|path| path.is_file())
            .collect();
        if files.is_empty() {
            eprintln!(
                "skipping {}: neither households.csv nor persons.csv in it",
                folder.display()
            );
            continue;
        }
        out.push((code, format!("county-{name}"), Source::Files(files)));
    }
    if out.is_empty() {
        bail!(
            "no county folders in {}: expected {}/<6-digit county code>/households.csv and \
             persons.csv",
            data.display(),
            data.display()
        );
    }
    out.sort_by_key(|(code, _, _)| *code);
    Ok(out)
}

/// Runs the demo.
pub fn run(options: &DemoOptions) -> Result<()> {
    crate::init_logging("error");
    let started = Instant::now();
    let temporary;
    let (root, keep) = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.canonicalize()?, true)
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("tiermesh-demo-")
                .tempdir()
                .context("creating a temporary folder")?;
            (temporary.path().to_path_buf(), false)
        }
    };
    let counties = counties(options)?;
    let county_names: Vec<(RegionCode, String)> = counties
        .iter()
        .map(|(code, name, _)| (*code, name.clone()))
        .collect();
    let today = crate::today();

    // Keys: written as files so that the printed commands work.
    let officer_path = root.join("officer.key");
    let staff_path = root.join("staff.key");
    let grant_path = root.join("national.grant");
    mesh_cli::keygen(&officer_path)?;
    let staff_key = mesh_cli::keygen(&staff_path)?;
    let officer = load_key(&officer_path)?;

    // Node directories: the tier tree above the counties.
    let nodes_root = root.join("nodes");
    let provinces: BTreeSet<RegionCode> = counties
        .iter()
        .filter_map(|(code, _, _)| code.ancestor_at(Tier::Province))
        .collect();
    let prefectures: BTreeSet<RegionCode> = counties
        .iter()
        .filter_map(|(code, _, _)| code.ancestor_at(Tier::Prefecture))
        .collect();
    let init = |code: RegionCode| DemoNode::init(&nodes_root, name_of(code, &county_names), code);
    let mut nodes = Nodes {
        national: init(RegionCode::NATIONAL)?,
        provinces: provinces
            .iter()
            .map(|code| init(*code))
            .collect::<Result<_>>()?,
        prefectures: prefectures
            .iter()
            .map(|code| init(*code))
            .collect::<Result<_>>()?,
        counties: counties
            .iter()
            .map(|(code, _, _)| init(*code))
            .collect::<Result<_>>()?,
    };
    println!(
        "TierMesh demo: 1 national, {} provinces, {} prefectures, {} counties on 127.0.0.1; \
         folder {}{}",
        nodes.provinces.len(),
        nodes.prefectures.len(),
        nodes.counties.len(),
        root.display(),
        if keep { "" } else { " (removed at the end)" }
    );

    // Data: each county imports its own rows before it starts.
    let data_started = Instant::now();
    let data_root = root.join("data");
    let (mut households, mut persons, mut warnings, mut rejected) = (0, 0, 0, 0);
    for (node, (_, _, source)) in nodes.counties.iter_mut().zip(&counties) {
        let (files, report_dir) = match source {
            Source::Generate {
                households,
                seed: county_seed,
            } => {
                gen::generate(&gen::GenOptions {
                    region: node.region,
                    households: *households,
                    seed: *county_seed,
                    out: data_root.clone(),
                    today,
                })
                .with_context(|| format!("generating data for {}", node.name))?;
                let folder = data_root.join(&node.region.to_string()[..6]);
                (
                    vec![folder.join("households.csv"), folder.join("persons.csv")],
                    None,
                )
            }
            Source::Files(files) => (files.clone(), Some(node.dir.path.join("import-reports"))),
        };
        let store = node.store()?;
        let mut store = store
            .lock()
            .map_err(|_| anyhow!("the store of {} is poisoned", node.name))?;
        let report = import::import(
            &mut store,
            node.region,
            &import::ImportOptions {
                files,
                dry_run: false,
                today,
                as_of: today,
                report_dir: report_dir.clone(),
                progress: false,
                log_commits: false,
                batch_rows: import::BATCH_ROWS_DEFAULT,
            },
        )
        .with_context(|| format!("importing into {}", node.name))?;
        let stored_of = |table: Table| -> u64 {
            report
                .files
                .iter()
                .filter(|file| file.table == Some(table))
                .map(|file| file.stored)
                .sum()
        };
        let (county_households, county_persons) =
            (stored_of(Table::Households), stored_of(Table::Persons));
        households += county_households;
        persons += county_persons;
        warnings += report.warnings();
        rejected += report.rejected();
        let mut line = format!(
            "  {:<12} {}  {:>7} households {:>8} persons stored, {} warnings, {} rejected",
            node.name,
            node.region,
            county_households,
            county_persons,
            report.warnings(),
            report.rejected()
        );
        if report.rejected() > 0 {
            if let Some(dir) = &report_dir {
                line.push_str(&format!(" (reports in {})", dir.display()));
            }
        }
        println!("{line}");
    }
    println!(
        "data: {households} households and {persons} persons in {} county stores ({warnings} \
         warnings, {rejected} rows rejected) in {:.1} s{}",
        nodes.counties.len(),
        data_started.elapsed().as_secs_f64(),
        if options.data.is_some() && rejected > 0 && !keep {
            "; give --dir to keep the rejects files"
        } else {
            ""
        }
    );

    mesh_cli::create(
        &nodes.national.dir.path,
        officer.public_key(),
        &nodes.national.addr.to_string(),
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let paths = Paths {
        officer: officer_path,
        staff: staff_path,
        grant: grant_path,
    };
    runtime.block_on(async {
        let outcome = demo(&mut nodes, &officer, staff_key, &paths, options, today).await;
        if outcome.is_ok() && options.serve {
            print_commands(&nodes, &paths, keep);
            crate::mesh_cli::wait_for_shutdown().await?;
            println!("\nstopping the mesh");
        }
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
        outcome?;
        stopped
    })?;
    drop(runtime);
    println!(
        "done in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if keep {
            format!("; everything is kept in {}", root.display())
        } else {
            String::new()
        }
    );
    Ok(())
}

struct Paths {
    officer: PathBuf,
    staff: PathBuf,
    grant: PathBuf,
}

/// Mesh set-up, grant, queries. Leaves the nodes running.
async fn demo(
    nodes: &mut Nodes,
    officer: &SigningKey,
    staff_key: PublicKey,
    paths: &Paths,
    options: &DemoOptions,
    today: tiermesh_federation::date::Date,
) -> Result<()> {
    let mesh_started = Instant::now();
    let (status, target) = start_mesh(
        nodes,
        officer,
        &GrantPlan {
            officer_file: &paths.officer,
            audience: staff_key,
            min_cell: 5,
            valid_days: 30,
            depth: 1,
            out: &paths.grant,
        },
        options.tick_ms,
    )
    .await?;
    println!(
        "\nmesh: {} nodes up in {:.1} s ({} voters, {} learners); every node applied the \
         metadata through index {target}",
        status.nodes.len(),
        mesh_started.elapsed().as_secs_f64(),
        status
            .nodes
            .iter()
            .filter(|node| node.role == Role::Voter)
            .count(),
        status
            .nodes
            .iter()
            .filter(|node| node.role == Role::Learner)
            .count(),
    );
    print!("{}", render_status(&status, Format::Table)?);
    println!(
        "\nofficer key {} registered the nodes and issued a national grant (min cell 5) to the \
         staff key {}",
        paths.officer.display(),
        paths.staff.display()
    );

    // The example queries, as `tiermesh query --connect` sends them.
    for (number, (title, sql)) in EXAMPLE_QUERIES.iter().enumerate() {
        let query = grant_cli::FederatedQuery {
            connect: nodes.national.addr.to_string(),
            key: paths.staff.clone(),
            grant: paths.grant.clone(),
            sql: (*sql).to_string(),
            as_of: today,
            deadline_ms: QUERY_DEADLINE_MS,
            server_key: Some(nodes.national.public_key),
        };
        let answer = tokio::task::spawn_blocking(move || grant_cli::query(&query, 1))
            .await
            .context("the query task panicked")?
            .with_context(|| format!("example query {}", number + 1))?;
        println!("\nQ{} {title}\n  {sql}", number + 1);
        print!("{}", grant_cli::render_answer(&answer, Format::Table)?);
        print!("{}", grant_cli::coverage_text(&answer.answer));
    }
    Ok(())
}

/// The national grant a mesh starts with.
pub(crate) struct GrantPlan<'a> {
    /// The officer's key file (it signs the grant).
    pub(crate) officer_file: &'a Path,
    pub(crate) audience: PublicKey,
    pub(crate) min_cell: u32,
    pub(crate) valid_days: u64,
    pub(crate) depth: u8,
    /// Where the grant file is written.
    pub(crate) out: &'a Path,
}

/// Starts the national node, registers every other node and starts it with the national node
/// as its bootstrap peer, promotes the first two provinces to voters, records `plan`'s national
/// grant, and waits until every node has applied everything committed. Returns the national
/// node's view of the mesh and the index every node has applied.
pub(crate) async fn start_mesh(
    nodes: &mut Nodes,
    officer: &SigningKey,
    plan: &GrantPlan<'_>,
    tick_ms: u64,
) -> Result<(MeshStatus, u64)> {
    nodes.national.start(Vec::new(), tick_ms)?;
    let national = nodes.national.session(officer).await?;

    // Every other node is registered by the officer, then started with the national node as
    // its bootstrap peer; the leader adds registered nodes as learners.
    let registrations: Vec<NodeRegistration> =
        nodes.all().skip(1).map(DemoNode::registration).collect();
    for registration in registrations {
        let name = registration.name.clone();
        let command = MetaCommand::RegisterNode(sign_registration(officer, registration));
        national
            .commit(&Message::Propose { command })
            .await
            .with_context(|| format!("registering {name}"))?;
    }
    let bootstrap = vec![(nodes.national.public_key, nodes.national.addr)];
    for node in nodes.all_mut().skip(1) {
        node.start(bootstrap.clone(), tick_ms)?;
    }

    // Two provinces become voters (with the national node: three).
    let voters: Vec<PublicKey> = nodes
        .provinces
        .iter()
        .take(2)
        .map(|node| node.public_key)
        .collect();
    crate::client::promote_to_voters(&national, officer, &voters, CONDITION_DEADLINE_MS, POLL_MS)
        .await?;

    // A national grant for the staff key, recorded in the mesh.
    let grant = grant_cli::issue(
        plan.officer_file,
        &grant_cli::LinkArgs {
            audience: plan.audience,
            scope: vec![RegionCode::NATIONAL],
            tables: vec![Table::Households, Table::Persons],
            dimensions: None,
            measures: None,
            min_cell: plan.min_cell,
            valid_days: plan.valid_days,
            depth: plan.depth,
        },
        plan.out,
    )?;
    let command = MetaCommand::RecordGrant(Box::new(grant));
    let grant_index = national
        .commit(&Message::Propose { command })
        .await
        .context("recording the grant")?;

    // Every node applies everything committed so far (the grant included).
    let target = grant_index.max(national.status(false).await?.commit);
    let status = crate::client::wait_for_status(
        &national,
        "every node registered and in step",
        CONDITION_DEADLINE_MS,
        POLL_MS,
        |status| {
            status.nodes.len() == nodes.all().count()
                && status.nodes.iter().all(|node| node.role != Role::Pending)
                && status
                    .nodes
                    .iter()
                    .filter(|node| node.role == Role::Voter)
                    .count()
                    == voters.len() + 1
        },
    )
    .await?;
    wait_all_applied(nodes, target).await?;
    let status = national.status(false).await.unwrap_or(status);
    national.close().await;
    Ok((status, target))
}

/// Polls every node, with its own key, until its applied index reaches `target`.
pub(crate) async fn wait_all_applied(nodes: &Nodes, target: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(CONDITION_DEADLINE_MS);
    for node in nodes.all() {
        let key = node.dir.signing_key()?;
        loop {
            let last = match node.session(&key).await {
                Ok(session) => {
                    let status = session.status(false).await;
                    session.close().await;
                    match status {
                        Ok(status) if status.applied >= target => break,
                        Ok(status) => format!("applied {} of {target}", status.applied),
                        Err(error) => format!("{error:#}"),
                    }
                }
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "node {} did not apply index {target} within {} s: {last}",
                    node.name,
                    CONDITION_DEADLINE_MS / 1000
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }
    Ok(())
}

/// A word for a POSIX shell: quoted unless made only of safe characters.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:@+=,".contains(&b))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn print_commands(nodes: &Nodes, paths: &Paths, keep: bool) {
    let binary = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "tiermesh".to_string());
    let binary = shell_word(&binary);
    let national = nodes.national.addr.to_string();
    let path = |path: &Path| shell_word(&path.display().to_string());
    println!(
        "\nthe mesh is running; from another terminal:\n\n  {binary} query --connect {national} \
         --key {} --grant {} \\\n    \"SELECT cause, COUNT(*) FROM households GROUP BY cause\"\n\n  \
         {binary} mesh status --key {} --connect {national}\n",
        path(&paths.staff),
        path(&paths.grant),
        path(&paths.officer),
    );
    if let Some(province) = nodes.provinces.first() {
        println!(
            "  (any node can be the entry point for the officer's status, e.g. {} at {}; the \
             grant's queries go to the national node)",
            province.name, province.addr
        );
    }
    println!(
        "\nCtrl-C stops every node{}.",
        if keep {
            ""
        } else {
            " and removes the demo folder"
        }
    );
}
