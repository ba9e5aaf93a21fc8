//! `tiermesh bench mesh`: metadata commit latency with three voters on loopback, and how long a
//! new learner takes to catch up a backlog. Real nodes in one process: RocksDB stores in a
//! temporary folder, QUIC on 127.0.0.1, the officer's requests through `client::Session`.
//! Figures only mean something from a release build.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::meta::{raft_id_of, sign_registration, MetaCommand, NodeRegistration};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::wire::{MeshStatus, Message, Role};
use tiermesh_storage::{Store, StoreOptions};

use crate::client::Session;
use crate::config::NodeDir;
use crate::mesh::{self, RunOptions, RunningNode};
use crate::mesh_cli;
use crate::raft_driver::{COMPACT_EVERY_ENTRIES, TICK_MS_DEFAULT};

/// Deadline for a mesh condition (a leader, a role, a follower in step) to become true.
pub const CONDITION_DEADLINE_MS: u64 = 60_000;
/// Deadline for the new learner to catch up the backlog.
pub const CATCH_UP_DEADLINE_MS: u64 = 600_000;
/// Pause between two status polls while waiting for a mesh condition.
pub const CONDITION_POLL_MS: u64 = 20;
/// Pause between two status polls of the catching-up learner: the resolution of its time.
pub const CATCH_UP_POLL_MS: u64 = 2;
/// Untimed commits before the timed ones (connections and caches warm up).
pub const WARMUP_COMMITS: usize = 20;
/// Sessions (QUIC connections) the backlog proposers share.
pub const BACKLOG_SESSIONS: usize = 4;
/// Worker threads of the runtime that carries every node's networking and the clients.
pub const WORKER_THREADS: usize = 4;

/// Options of `tiermesh bench mesh`.
#[derive(clap::Args, Debug, Clone)]
pub struct MeshOptions {
    /// Sequential commits timed for the latency figures.
    #[arg(long, default_value_t = 500)]
    pub commits: usize,
    /// Entries in the log before the new learner joins.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
    /// Concurrent proposals while the backlog is built.
    #[arg(long, default_value_t = 32)]
    pub proposers: usize,
    /// Raft tick of every node.
    #[arg(long, default_value_t = TICK_MS_DEFAULT)]
    pub tick_ms: u64,
    /// Working folder for the node directories (it must not hold nodes yet); a fresh temporary
    /// folder when omitted.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One node of the benchmark: its directory, key and address, and once started its store and
/// running endpoint.
struct BenchNode {
    name: &'static str,
    region: RegionCode,
    dir: NodeDir,
    public_key: PublicKey,
    addr: SocketAddr,
    /// Kept open for as long as the node runs.
    store: Option<std::sync::Arc<std::sync::Mutex<Store>>>,
    running: Option<RunningNode>,
}

impl BenchNode {
    /// `tiermesh init` for a node, with a free UDP port on 127.0.0.1 for its address.
    fn init(root: &Path, name: &'static str, region: u64) -> Result<BenchNode> {
        let region = RegionCode::from_u64(region)
            .map_err(|error| anyhow!("region {region:012} of node {name}: {error}"))?;
        let dir = NodeDir::init(&root.join(name), region, Some(name))?;
        let public_key = dir.signing_key()?.public_key();
        Ok(BenchNode {
            name,
            region,
            dir,
            public_key,
            addr: crate::demo::free_addr()?,
            store: None,
            running: None,
        })
    }

    fn raft_id(&self) -> u64 {
        raft_id_of(&self.public_key)
    }

    /// Opens the store and starts the node. Call inside the runtime.
    fn start(&mut self, bootstrap_peers: Vec<(PublicKey, SocketAddr)>, tick_ms: u64) -> Result<()> {
        let store = self.dir.open_store(&StoreOptions::default())?;
        let log = store.raft_log()?;
        let store = std::sync::Arc::new(std::sync::Mutex::new(store));
        let running = mesh::start(
            self.dir.signing_key()?,
            log,
            std::sync::Arc::clone(&store),
            &RunOptions {
                listen: self.addr,
                bootstrap_peers,
                tick_ms,
                import: None,
                metrics: Default::default(),
                audit_dir: Some(self.dir.path.join(crate::audit_cli::AUDIT_FOLDER)),
            },
        )
        .with_context(|| format!("starting node {}", self.name))?;
        self.store = Some(store);
        self.running = Some(running);
        Ok(())
    }

    /// The node's registration, under `name`.
    fn registration(&self, name: String) -> NodeRegistration {
        NodeRegistration {
            key: self.public_key,
            name,
            region: self.region,
            addr: self.addr.to_string(),
        }
    }

    /// A session to this node, presenting `key`.
    async fn session(&self, key: &SigningKey) -> Result<Session> {
        Session::connect(key, &self.addr.to_string(), Some(self.public_key))
            .await
            .with_context(|| format!("connecting to node {}", self.name))
    }

    /// Stops the node if it runs and closes its store.
    async fn stop(&mut self) -> Result<()> {
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

/// The benchmark's nodes.
struct Nodes {
    national: BenchNode,
    provinces: [BenchNode; 2],
    /// The node that joins once the backlog is built.
    newcomer: BenchNode,
}

impl Nodes {
    fn all_mut(&mut self) -> [&mut BenchNode; 4] {
        let [first, second] = &mut self.provinces;
        [&mut self.newcomer, first, second, &mut self.national]
    }

    fn by_raft_id(&self, raft_id: u64) -> Option<&BenchNode> {
        [
            &self.national,
            &self.provinces[0],
            &self.provinces[1],
            &self.newcomer,
        ]
        .into_iter()
        .find(|node| node.raft_id() == raft_id)
    }
}

/// What the learner's catch-up showed.
struct CatchUp {
    /// The leader's commit index before the backlog was built.
    backlog_start: u64,
    /// The leader's commit index when the learner started: the target.
    target: u64,
    elapsed: Duration,
    /// The first non-zero applied index the learner reported.
    first_applied: u64,
    /// When the learner first named a leader: the leader's first message reached it.
    heard_from_leader: Duration,
}

/// Runs the benchmark and prints its figures.
pub fn run(options: &MeshOptions) -> Result<()> {
    if options.commits == 0 || options.proposers == 0 {
        bail!("--commits and --proposers must be at least 1");
    }
    crate::init_logging("warn");
    let temporary;
    let root = match &options.dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::tempdir().context("creating a temporary folder")?;
            temporary.path().to_path_buf()
        }
    };
    println!(
        "mesh benchmark: 3 voters (national + 2 provinces) in one process on {} CPUs; loopback \
         QUIC, RocksDB with fsync on every Raft write; tick {} ms",
        std::thread::available_parallelism().map_or(0, usize::from),
        options.tick_ms
    );
    println!(
        "  latency: {} sequential metadata commits (re-registrations) sent to the leader, after \
         {WARMUP_COMMITS} untimed",
        options.commits
    );
    println!(
        "  catch-up: a new prefecture node joins after a backlog of {} entries (the leader \
         compacts its log every {COMPACT_EVERY_ENTRIES} entries)",
        options.backlog
    );
    println!("  folder: {}", root.display());

    let officer = Arc::new(SigningKey::generate(&ring::rand::SystemRandom::new())?);
    let national = BenchNode::init(&root, "national", 0)?;
    mesh_cli::create(
        &national.dir.path,
        officer.public_key(),
        &national.addr.to_string(),
    )?;
    let mut nodes = Nodes {
        national,
        provinces: [
            BenchNode::init(&root, "guizhou", 520_000_000_000)?,
            BenchNode::init(&root, "yunnan", 530_000_000_000)?,
        ],
        newcomer: BenchNode::init(&root, "guiyang", 520_100_000_000)?,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let catch_up = runtime.block_on(async {
        let outcome = benchmark(&mut nodes, &officer, options).await;
        let mut stopped = Ok(());
        for node in nodes.all_mut() {
            let result = node.stop().await;
            if stopped.is_ok() {
                stopped = result;
            }
        }
        let catch_up = outcome?;
        stopped?;
        Ok::<_, anyhow::Error>(catch_up)
    })?;
    drop(runtime);
    report_snapshot(&nodes, &catch_up)
}

/// The three phases: mesh set-up, latency, backlog and catch-up. Leaves the nodes running.
async fn benchmark(
    nodes: &mut Nodes,
    officer: &Arc<SigningKey>,
    options: &MeshOptions,
) -> Result<CatchUp> {
    let set_up = Instant::now();
    nodes.national.start(Vec::new(), options.tick_ms)?;
    let bootstrap = vec![(nodes.national.public_key, nodes.national.addr)];
    let national = nodes.national.session(officer).await?;
    for province in &nodes.provinces {
        let command = registration_command(officer, province.registration(province.name.into()));
        national
            .commit(&Message::Propose { command })
            .await
            .with_context(|| format!("registering {}", province.name))?;
    }
    for province in &mut nodes.provinces {
        province.start(bootstrap.clone(), options.tick_ms)?;
    }
    let province_keys = nodes.provinces.each_ref().map(|node| node.public_key);
    crate::client::promote_to_voters(
        &national,
        officer,
        &province_keys,
        CONDITION_DEADLINE_MS,
        CONDITION_POLL_MS,
    )
    .await?;
    let status = crate::client::wait_for_status(
        &national,
        "three voters in step with the leader",
        CONDITION_DEADLINE_MS,
        CONDITION_POLL_MS,
        |status| {
            let voters: Vec<_> = status
                .nodes
                .iter()
                .filter(|node| node.role == Role::Voter)
                .collect();
            voters.len() == 3
                && voters
                    .iter()
                    .all(|node| node.matched.is_some_and(|matched| matched >= status.commit))
        },
    )
    .await?;
    national.close().await;
    let leader = leader_of(nodes, &status)?;
    println!(
        "\nset-up: 3 voters in {:.2} s; leader {} (term {}, commit {})",
        set_up.elapsed().as_secs_f64(),
        leader.name,
        status.term,
        status.commit
    );

    let session = leader.session(officer).await?;
    let subject = &nodes.provinces[0];
    for round in 0..WARMUP_COMMITS {
        let command =
            registration_command(officer, subject.registration(format!("warm {round:06}")));
        session.commit(&Message::Propose { command }).await?;
    }
    let mut samples = Vec::with_capacity(options.commits);
    let started = Instant::now();
    for round in 0..options.commits {
        let command = registration_command(
            officer,
            subject.registration(format!("{} {round:06}", subject.name)),
        );
        let sent = Instant::now();
        session
            .commit(&Message::Propose { command })
            .await
            .with_context(|| format!("timed commit {round}"))?;
        samples.push(sent.elapsed());
    }
    let total = started.elapsed();
    samples.sort();
    println!(
        "\ncommit latency, {} commits to the leader, one at a time:",
        samples.len()
    );
    println!(
        "  median {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   max {:.2} ms   ({:.0} commits/s)",
        millis(percentile(&samples, 50)),
        millis(percentile(&samples, 90)),
        millis(percentile(&samples, 99)),
        millis(percentile(&samples, 100)),
        samples.len() as f64 / total.as_secs_f64()
    );

    let before = session.status(false).await?.commit;
    let started = Instant::now();
    build_backlog(leader, &nodes.provinces, officer, options).await?;
    let built = started.elapsed();
    let after = session.status(false).await?.commit;
    println!(
        "\nbacklog: {} proposals committed in {:.2} s ({:.0} entries/s with {} concurrent \
         proposers); leader commit {before} -> {after}",
        options.backlog,
        built.as_secs_f64(),
        options.backlog as f64 / built.as_secs_f64(),
        options.proposers
    );

    let newcomer = &nodes.newcomer;
    let command = registration_command(officer, newcomer.registration(newcomer.name.into()));
    session
        .commit(&Message::Propose { command })
        .await
        .with_context(|| format!("registering {}", newcomer.name))?;
    let target = session.status(false).await?.commit;
    session.close().await;
    let catch_up = catch_up(
        &mut nodes.newcomer,
        bootstrap,
        before..target,
        options.tick_ms,
    )
    .await?;
    println!(
        "\ncatch-up: new learner {} (empty log, joining after the {}-entry backlog) reached the \
         leader's commit index {} as of its start in {:.3} s: {:.0} entries/s",
        nodes.newcomer.name,
        options.backlog,
        catch_up.target,
        catch_up.elapsed.as_secs_f64(),
        catch_up.target as f64 / catch_up.elapsed.as_secs_f64()
    );
    println!(
        "  of which: {:.1} ms until the leader's first message reached it, {:.1} ms from there to \
         caught up (status polled every {CATCH_UP_POLL_MS} ms)",
        millis(catch_up.heard_from_leader),
        millis(catch_up.elapsed.saturating_sub(catch_up.heard_from_leader))
    );
    Ok(catch_up)
}

/// Starts the new node and times it until its applied index reaches the end of `backlog` (the
/// leader's commit indexes before the backlog and when the node starts).
async fn catch_up(
    node: &mut BenchNode,
    bootstrap: Vec<(PublicKey, SocketAddr)>,
    backlog: Range<u64>,
    tick_ms: u64,
) -> Result<CatchUp> {
    let target = backlog.end;
    let started = Instant::now();
    node.start(bootstrap, tick_ms)?;
    // Until it has the registry the node trusts only its bootstrap peer and its own key, so it is
    // asked with its own key (a connection from itself is never used as a Raft route).
    let own_key = node.dir.signing_key()?;
    let session = node.session(&own_key).await?;
    let deadline = started + Duration::from_millis(CATCH_UP_DEADLINE_MS);
    let mut first_applied = 0;
    let mut heard_from_leader = None;
    loop {
        let last = match session.status(false).await {
            Ok(status) => {
                if first_applied == 0 && status.applied > 0 {
                    first_applied = status.applied;
                }
                if heard_from_leader.is_none() && status.leader.is_some() {
                    heard_from_leader = Some(started.elapsed());
                }
                if status.applied >= target {
                    break;
                }
                format!("applied {} of {target}", status.applied)
            }
            Err(error) => format!("{error:#}"),
        };
        if Instant::now() > deadline {
            bail!(
                "node {} did not catch up within {} s: {last}",
                node.name,
                CATCH_UP_DEADLINE_MS / 1000
            );
        }
        tokio::time::sleep(Duration::from_millis(CATCH_UP_POLL_MS)).await;
    }
    let elapsed = started.elapsed();
    session.close().await;
    Ok(CatchUp {
        backlog_start: backlog.start,
        target,
        elapsed,
        first_applied,
        heard_from_leader: heard_from_leader.unwrap_or(elapsed),
    })
}

/// Commits `options.backlog` re-registrations of the provinces, `options.proposers` at a time.
async fn build_backlog(
    leader: &BenchNode,
    provinces: &[BenchNode; 2],
    officer: &Arc<SigningKey>,
    options: &MeshOptions,
) -> Result<()> {
    let mut sessions = Vec::with_capacity(BACKLOG_SESSIONS);
    for _ in 0..BACKLOG_SESSIONS.min(options.proposers) {
        sessions.push(Arc::new(leader.session(officer).await?));
    }
    let registrations = provinces
        .each_ref()
        .map(|node| node.registration(String::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(options.proposers);
    for proposer in 0..options.proposers {
        let session = Arc::clone(&sessions[proposer % sessions.len()]);
        let officer = Arc::clone(officer);
        let next = Arc::clone(&next);
        let registrations = registrations.clone();
        let backlog = options.backlog;
        tasks.push(tokio::spawn(async move {
            loop {
                let round = next.fetch_add(1, Ordering::Relaxed);
                if round >= backlog {
                    return Ok::<_, anyhow::Error>(());
                }
                let mut registration = registrations[round % registrations.len()].clone();
                registration.name = format!("backlog {round:06}");
                let command = registration_command(&officer, registration);
                session
                    .commit(&Message::Propose { command })
                    .await
                    .with_context(|| format!("backlog proposal {round}"))?;
            }
        }));
    }
    let mut outcome = Ok(());
    for task in tasks {
        let result = task.await.context("a backlog proposer panicked")?;
        if outcome.is_ok() {
            outcome = result;
        }
    }
    for session in sessions {
        if let Ok(session) = Arc::try_unwrap(session) {
            session.close().await;
        }
    }
    outcome
}

/// After the run: whether the learner caught up through a snapshot, read from the stopped
/// nodes' logs.
fn report_snapshot(nodes: &Nodes, catch_up: &CatchUp) -> Result<()> {
    let first_index = |node: &BenchNode| -> Result<u64> {
        let store = node.dir.open_store(&StoreOptions::default())?;
        let log = store.raft_log()?;
        Ok(log.first_index_cached())
    };
    let leader_compacted = first_index(&nodes.national)? - 1;
    // The learner compacts only after applying COMPACT_EVERY_ENTRIES entries itself, so its
    // snapshot index is the one of the snapshot it installed, if it installed one.
    let snapshot = first_index(&nodes.newcomer)? - 1;
    let how = if snapshot >= catch_up.backlog_start {
        "through a snapshot"
    } else {
        "through log entries"
    };
    println!(
        "  {how}: the learner's snapshot is at index {snapshot} (first applied index it \
         reported: {}), {} entries replayed after it; the backlog started after index {}; the \
         national node's log is compacted up to index {leader_compacted}",
        catch_up.first_applied,
        catch_up.target.saturating_sub(snapshot),
        catch_up.backlog_start
    );
    Ok(())
}

fn registration_command(officer: &SigningKey, registration: NodeRegistration) -> MetaCommand {
    MetaCommand::RegisterNode(sign_registration(officer, registration))
}

fn leader_of<'a>(nodes: &'a Nodes, status: &MeshStatus) -> Result<&'a BenchNode> {
    let leader = status
        .leader
        .ok_or_else(|| anyhow!("the mesh has no leader"))?;
    nodes
        .by_raft_id(leader)
        .ok_or_else(|| anyhow!("the leader {leader:016x} is not a node of the benchmark"))
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    assert!(!sorted.is_empty() && percent <= 100);
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
