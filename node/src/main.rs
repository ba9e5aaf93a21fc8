//! `tiermesh`: the command line of a TierMesh node.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tiermesh::config::NodeDir;
use tiermesh::import::{import, ImportOptions};
use tiermesh::output::{render, Format};
use tiermesh::{bench, gen, mesh_cli, EXIT_FATAL, EXIT_OK, EXIT_REJECTED};
use tiermesh_federation::date::Date;
use tiermesh_federation::record::HouseholdId;
use tiermesh_federation::region::RegionCode;
use tiermesh_storage::StoreOptions;

/// mimalloc: cheaper small allocations than glibc's, and large blocks on transparent huge pages
/// where the system allows it (the image's hash tables are hundreds of MB, randomly accessed).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// TierMesh: every administrative tier keeps its own poverty-alleviation records; aggregate
/// questions travel, records do not.
#[derive(Parser, Debug)]
#[command(name = "tiermesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a node directory: node.toml, a new Ed25519 node key (mode 0600), an empty database.
    Init {
        /// The node directory to create.
        #[arg(long)]
        dir: PathBuf,
        /// The region the node keeps records for: a 12-digit code (province, prefecture, county
        /// or township), e.g. 520102000000.
        #[arg(long)]
        region: String,
        /// A human name for the node.
        #[arg(long)]
        name: Option<String>,
    },
    /// Import CSV files of households and persons (any order; the table is read from the header).
    ///
    /// Rejected rows go to FILE.rejects.csv and warnings to FILE.warnings.csv, next to each file
    /// (or in --report-dir). A rejects file can be corrected in a spreadsheet and imported again.
    /// Exit codes: 0 every row stored, 1 some rows rejected (the rest stored), 2 fatal error.
    Import {
        /// The node directory (the node must not be running; to import into a running node use
        /// --connect).
        #[arg(long, required_unless_present = "connect", conflicts_with_all = ["connect", "key"])]
        dir: Option<PathBuf>,
        /// A running node to import into (HOST:PORT): the files are sent to it and imported
        /// there, with the same rules and reports; needs an operator key (--key).
        #[arg(long, requires = "key")]
        connect: Option<String>,
        /// With --connect: an operator key of that node (its node.key, or a key listed as
        /// `operators` in its node.toml or given to `tiermesh run --operator`).
        #[arg(long)]
        key: Option<PathBuf>,
        /// With --connect: the node's public key, to pin it.
        #[arg(long, requires = "connect")]
        server_key: Option<String>,
        /// Validate and report only; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Reference date of the age-based screens (YYYY-MM-DD); default today.
        #[arg(long)]
        as_of: Option<String>,
        /// Folder for the rejects and warnings files; default beside each input file.
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
        /// After every durable write print `committed FILE through line N` on stdout (local
        /// imports).
        #[arg(long, conflicts_with = "connect")]
        log_commits: bool,
        /// Rows per durable write batch (local imports).
        #[arg(long, default_value_t = tiermesh::import::BATCH_ROWS_DEFAULT, conflicts_with = "connect")]
        batch_rows: usize,
        /// CSV files of the data standard.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Remove households, with all their persons. Visible to the next query.
    Remove {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
        /// 16-digit household ids.
        #[arg(long = "household", required = true, num_args = 1..)]
        households: Vec<String>,
    },
    /// Ask an aggregate question: of this node's own data (`--dir`), or of the mesh under a
    /// signed grant (`--connect --key --grant`).
    Query {
        /// The node directory (local query).
        #[arg(long, conflicts_with_all = ["connect", "key", "grant"])]
        dir: Option<PathBuf>,
        /// A node whose region contains the grant's scope, HOST:PORT (federated query).
        #[arg(long, requires_all = ["key", "grant"])]
        connect: Option<String>,
        /// Your key file: the grant's audience signs the request.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The grant file.
        #[arg(long)]
        grant: Option<PathBuf>,
        /// Pin the entry node's public key.
        #[arg(long)]
        server_key: Option<String>,
        /// The query, e.g. "SELECT cause, COUNT(*) FROM households GROUP BY cause".
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Reference date for age() and age_band() (YYYY-MM-DD); default today.
        #[arg(long)]
        as_of: Option<String>,
        /// Execute the query this many times and report the median time (`elapsed_ms` in JSON),
        /// for benchmarks. Federated: each run is a new signed request on one connection, timed
        /// from sending it to receiving the answer (`runs_ms` in JSON lists them all); the
        /// answer shown is the last.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// How long the mesh may take, e.g. 5s or 800ms (federated queries).
        #[arg(long, default_value = "5s")]
        deadline: String,
        /// Fail (exit 2) instead of answering when any region is missing.
        #[arg(long)]
        strict: bool,
    },
    /// The node's tamper-evident audit log: what it answered and refused, to whom.
    Audit {
        #[command(subcommand)]
        which: AuditCommand,
    },
    /// Grants: who may ask what, signed by officers and narrowed by delegation.
    Grant {
        #[command(subcommand)]
        which: GrantCommand,
    },
    /// Generate valid synthetic data: OUT/<county code>/{households,persons}.csv.
    Gen {
        /// The region to fill: national (000000000000), a province, a prefecture or a county.
        #[arg(long)]
        region: String,
        /// Number of households in all.
        #[arg(long)]
        households: u64,
        /// Seed: the same seed gives the same files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The "today" of the data (YYYY-MM-DD); default today.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// A real local mesh in this process: national, provinces, prefectures and counties with
    /// data, an officer, a grant and example national queries (`--serve` keeps it running).
    Demo(tiermesh::demo::DemoOptions),
    /// Benchmarks; build with --release for meaningful figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Write a new Ed25519 key (an officer's, a staff member's) to a file, mode 0600.
    Keygen {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// The mesh: create it, see it, change who votes.
    Mesh {
        #[command(subcommand)]
        which: MeshCommand,
    },
    /// Nodes of the mesh.
    Node {
        #[command(subcommand)]
        which: NodeCommand,
    },
    /// Security officers.
    Officer {
        #[command(subcommand)]
        which: OfficerCommand,
    },
    /// Run the node: serve the mesh until SIGINT or SIGTERM. Logs go to stderr
    /// (RUST_LOG=debug for more).
    Run {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
        /// UDP address to listen on (port 0 picks one; the chosen address is printed).
        /// Default: `[mesh] listen` in node.toml, else 127.0.0.1:7400.
        #[arg(long)]
        listen: Option<String>,
        /// A peer trusted before this node has the registry: KEY@HOST:PORT (repeatable). A node
        /// joining a mesh names a voter it can reach.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Raft tick in milliseconds (an election takes 10-20 ticks). Default: `[mesh] tick_ms`
        /// in node.toml, else 100.
        #[arg(long)]
        tick_ms: Option<u64>,
        /// A key allowed to import into this running node (`import --connect`): public key
        /// (hex) or key file (repeatable; adds to `[mesh] operators`; the node key always may).
        #[arg(long = "operator")]
        operators: Vec<String>,
        /// TCP address of the admin HTTP port: Prometheus `/metrics` and `/healthz` (e.g.
        /// 127.0.0.1:9464; keep it off public interfaces). Default: `[mesh] admin` in
        /// node.toml, else no admin port.
        #[arg(long)]
        admin: Option<String>,
    },
    /// The node at the console: identity, stored rows, data version, Raft state, audit log and,
    /// when the node is running, its live status.
    Status {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(clap::Args, Debug)]
struct LinkFlags {
    /// Who receives the rights: a public key (hex) or key file.
    #[arg(long)]
    audience: String,
    /// Regions whose rows may be aggregated (12-digit codes, comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    scope: Vec<String>,
    /// Tables that may be read.
    #[arg(long, value_delimiter = ',', default_value = "households,persons")]
    tables: Vec<String>,
    /// Columns that may be grouped by or filtered on; default every non-personal column, plus
    /// birth_date when persons are granted (usable only as age()/age_band(): no date is ever
    /// released).
    #[arg(long, value_delimiter = ',')]
    dimensions: Option<Vec<String>>,
    /// Columns that may be aggregated; default every non-personal column.
    #[arg(long, value_delimiter = ',')]
    measures: Option<Vec<String>>,
    /// Smallest group count a released cell may have.
    #[arg(long, default_value_t = 5)]
    min_cell: u32,
    /// Days the link is valid from now.
    #[arg(long, default_value_t = 30)]
    valid_days: u64,
    /// How many more links may be delegated below this one.
    #[arg(long, default_value_t = 1)]
    depth: u8,
}

#[derive(Subcommand, Debug)]
enum GrantCommand {
    /// An officer grants rights inside its jurisdiction.
    Issue {
        /// The officer's key file.
        #[arg(long)]
        officer_key: PathBuf,
        #[command(flatten)]
        link: LinkFlags,
        /// The grant file to write.
        #[arg(long)]
        out: PathBuf,
        /// Record the grant in the mesh through this node (HOST:PORT): its audience may then
        /// connect to ask queries.
        #[arg(long)]
        connect: Option<String>,
    },
    /// The holder of a grant passes on narrower rights.
    Delegate {
        /// The holder's key file (the grant's audience).
        #[arg(long)]
        key: PathBuf,
        /// The grant to delegate from.
        #[arg(long)]
        grant: PathBuf,
        #[command(flatten)]
        link: LinkFlags,
        /// The grant file to write.
        #[arg(long)]
        out: PathBuf,
        /// Record the grant in the mesh through this node (HOST:PORT).
        #[arg(long)]
        connect: Option<String>,
    },
    /// Withdraw a grant link, and with it every link delegated from it, everywhere: once this
    /// returns, no node answers a query under it.
    Revoke {
        /// The key of the link's issuer, or of an officer whose jurisdiction covers its scope.
        #[arg(long, alias = "key")]
        officer_key: PathBuf,
        /// The link's id (32 hex digits, as `grant show` and `grant list` print it).
        #[arg(long, required_unless_present = "grant", conflicts_with = "grant")]
        grant_id: Option<String>,
        /// Or: a grant file, whose last link is revoked.
        #[arg(long)]
        grant: Option<PathBuf>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
        /// Any node of the mesh, HOST:PORT (the revocation reaches the Raft leader).
        #[arg(long)]
        connect: String,
        /// Pin the node's public key.
        #[arg(long)]
        server_key: Option<String>,
    },
    /// The grants recorded in the mesh: who may see what, and what has been revoked.
    List {
        /// A key the node accepts (an officer's, a node's or a grant audience's).
        #[arg(long, alias = "officer-key")]
        key: PathBuf,
        /// Any node of the mesh, HOST:PORT.
        #[arg(long)]
        connect: String,
        /// Only grants whose scope contains or lies inside this region (12 digits).
        #[arg(long)]
        region: Option<String>,
        /// Pin the node's public key.
        #[arg(long)]
        server_key: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print a grant file.
    Show {
        /// The grant file.
        file: PathBuf,
        /// Output format (table prints text).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Print the audit records of a node directory (the node may be running).
    Show {
        /// The node directory.
        #[arg(long)]
        dir: PathBuf,
        /// Only the newest N records.
        #[arg(long)]
        last: Option<usize>,
        /// table, or json (one record per line, as stored).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Verify an audit log: offline from a node directory (`--dir`), or a running node's signed
    /// head against the one seen last time (`--connect`); exit 1 when it does not verify.
    Verify {
        /// The node directory (offline).
        #[arg(long, required_unless_present = "connect", conflicts_with = "connect")]
        dir: Option<PathBuf>,
        /// With --dir: the audit key (hex or key file) to trust; default the node's own
        /// audit/audit.key.
        #[arg(long, requires = "dir")]
        audit_key: Option<String>,
        /// A running node, HOST:PORT.
        #[arg(long, requires = "key")]
        connect: Option<String>,
        /// With --connect: a key the node accepts (an officer's, say).
        #[arg(long)]
        key: Option<PathBuf>,
        /// With --connect: pin the node's public key.
        #[arg(long)]
        server_key: Option<String>,
        /// With --connect: where the heads seen are kept (default ~/.tiermesh/audit-heads.json).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum MeshCommand {
    /// Make this node (normally the national one) the first voter of a new mesh, with OFFICER
    /// as the root security officer (national jurisdiction).
    Create {
        /// The node directory (made by `tiermesh init`).
        #[arg(long)]
        dir: PathBuf,
        /// The root officer's public key (hex) or key file.
        #[arg(long)]
        officer: String,
        /// The address other nodes reach this one at, HOST:PORT.
        #[arg(long)]
        addr: String,
    },
    /// Nodes, tiers, roles, leader, applied index, lag and reachability, as one node sees them.
    Status {
        /// A node to ask, HOST:PORT.
        #[arg(long)]
        connect: String,
        /// A registered key to connect with (an officer's or a node's key file).
        #[arg(long)]
        key: PathBuf,
        /// Pin the node's public key.
        #[arg(long)]
        server_key: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Answer only after the node has applied everything the leader had committed
        /// (Raft read-index), so the view is current.
        #[arg(long)]
        fresh: bool,
    },
    /// Make a registered node a Raft voter (signed by a national officer).
    Promote(RoleArgs),
    /// Make a voter a learner again (signed by a national officer).
    Demote(RoleArgs),
}

#[derive(clap::Args, Debug)]
struct RoleArgs {
    /// The node's public key (hex) or key file.
    node: String,
    /// The officer's key file (national jurisdiction).
    #[arg(long)]
    officer_key: PathBuf,
    /// A node to send it to, HOST:PORT.
    #[arg(long)]
    connect: String,
    /// Pin the node's public key.
    #[arg(long)]
    server_key: Option<String>,
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Register a node in the mesh, signed by an officer whose jurisdiction covers its region.
    Register {
        /// The officer's key file.
        #[arg(long)]
        officer_key: PathBuf,
        /// The node's public key (hex; `tiermesh init` prints it) or its key file.
        #[arg(long)]
        pubkey: String,
        /// The node's region, 12 digits.
        #[arg(long)]
        region: String,
        /// The address the node listens on, HOST:PORT.
        #[arg(long)]
        addr: String,
        /// A human name.
        #[arg(long)]
        name: Option<String>,
        /// A node of the mesh to send the registration to, HOST:PORT.
        #[arg(long)]
        connect: String,
        /// Pin the contacted node's public key.
        #[arg(long)]
        server_key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum OfficerCommand {
    /// Appoint a security officer with a jurisdiction inside the appointing officer's.
    Appoint {
        /// The appointing officer's key file.
        #[arg(long)]
        officer_key: PathBuf,
        /// The new officer's public key (hex) or key file.
        #[arg(long)]
        pubkey: String,
        /// The new officer's jurisdiction, 12 digits.
        #[arg(long)]
        jurisdiction: String,
        /// A node of the mesh, HOST:PORT.
        #[arg(long)]
        connect: String,
        /// Pin the contacted node's public key.
        #[arg(long)]
        server_key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// One node: generate data, import it, and time the local queries.
    Local(bench::LocalOptions),
    /// Three voters on loopback: metadata commit latency, and a new learner's catch-up time.
    Mesh(tiermesh::bench_mesh::MeshOptions),
    /// A 77-node loopback mesh with generated data: federated query medians (compare with
    /// DuckDB through bench/federated_compare.py).
    Federated(tiermesh::bench_federated::FederatedOptions),
}

fn parse_date(text: Option<&str>, what: &str) -> Result<Date> {
    match text {
        None => Ok(tiermesh::today()),
        Some(text) => Date::parse_iso(text)
            .with_context(|| format!("{what} '{text}' is not a date written YYYY-MM-DD")),
    }
}

fn parse_region(text: &str) -> Result<RegionCode> {
    text.parse()
        .with_context(|| format!("--region '{text}' is not a region code"))
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Init { dir, region, name } => {
            let node = NodeDir::init(&dir, parse_region(&region)?, name.as_deref())?;
            println!(
                "created {} node '{}' for region {} in {}\npublic key {}",
                node.config.tier,
                node.config.name,
                node.config.region,
                dir.display(),
                node.config.public_key
            );
            Ok(EXIT_OK)
        }
        Command::Import {
            dir,
            connect,
            key,
            server_key,
            dry_run,
            as_of,
            report_dir,
            quiet,
            log_commits,
            batch_rows,
            files,
        } => {
            if let Some(connect) = connect {
                let report = tiermesh::online_import::import_remote(
                    &tiermesh::online_import::RemoteImport {
                        connect,
                        key: key.context("--key is required with --connect")?,
                        server_key: server_key
                            .as_deref()
                            .map(mesh_cli::parse_public_key)
                            .transpose()?,
                        dry_run,
                        as_of: as_of
                            .as_deref()
                            .map(|text| parse_date(Some(text), "--as-of"))
                            .transpose()?,
                        report_dir,
                        progress: !quiet,
                        files: files.clone(),
                    },
                )?;
                for ((file, path), (rejects, warnings)) in
                    report.answer.files.iter().zip(&files).zip(&report.written)
                {
                    if file.rejected == 0 && file.warnings == 0 {
                        continue;
                    }
                    let mut line = format!(
                        "{}: {} rows, {} {}, {} rejected, {} warnings",
                        path.display(),
                        file.rows,
                        file.stored,
                        if report.answer.dry_run {
                            "valid"
                        } else {
                            "stored"
                        },
                        file.rejected,
                        file.warnings
                    );
                    for path in [rejects, warnings].into_iter().flatten() {
                        line.push_str(&format!(" -> {}", path.display()));
                    }
                    eprintln!("{line}");
                }
                if let Some(kept) = &report.answer.reports_kept_at {
                    eprintln!("the reports are too large to send; the node keeps them in {kept}");
                }
                println!("{}", report.answer.summary);
                return Ok(if report.rejected() > 0 {
                    EXIT_REJECTED
                } else {
                    EXIT_OK
                });
            }
            let dir = dir.context("give --dir DIR, or --connect ADDR --key FILE")?;
            let node = NodeDir::open(&dir)?;
            let today = tiermesh::today();
            let options = ImportOptions {
                files,
                dry_run,
                today,
                as_of: parse_date(as_of.as_deref(), "--as-of")?,
                report_dir,
                progress: !quiet,
                log_commits,
                batch_rows,
            };
            let mut store = node.open_store(&StoreOptions::default())?;
            let report = import(&mut store, node.config.region_code()?, &options)?;
            // One line per file with rejected rows (a cadre must act on those); the warnings
            // files are listed when there are few of them.
            let few_files = report.files.len() <= 10;
            for file in &report.files {
                if file.rejected == 0 && !(few_files && file.warnings > 0) {
                    continue;
                }
                let mut line = format!(
                    "{}: {} rows, {} {}, {} rejected, {} warnings",
                    file.path.display(),
                    file.rows,
                    file.stored,
                    if report.dry_run { "valid" } else { "stored" },
                    file.rejected,
                    file.warnings
                );
                for path in [&file.rejects_file, &file.warnings_file]
                    .into_iter()
                    .flatten()
                {
                    line.push_str(&format!(" -> {}", path.display()));
                }
                eprintln!("{line}");
            }
            let warning_files = report
                .files
                .iter()
                .filter(|f| f.warnings_file.is_some())
                .count();
            if !few_files && warning_files > 0 {
                eprintln!("warnings written to {warning_files} FILE.warnings.csv files");
            }
            println!("{}", report.summary_line());
            Ok(if report.rejected() > 0 {
                EXIT_REJECTED
            } else {
                EXIT_OK
            })
        }
        Command::Remove { dir, households } => {
            let node = NodeDir::open(&dir)?;
            let mut ids = Vec::with_capacity(households.len());
            for text in &households {
                if text.len() != 16 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                    bail!("--household '{text}' is not a 16-digit household id");
                }
                ids.push(HouseholdId(text.parse()?));
            }
            let mut store = node.open_store(&StoreOptions::default())?;
            let summary = store.remove_households(&ids)?;
            for id in &summary.not_found {
                eprintln!("household {id} is not stored here; nothing to remove");
            }
            println!(
                "removed {} households and {} persons; data version {}",
                summary.households.len(),
                summary.persons,
                summary.data_version
            );
            Ok(if summary.not_found.is_empty() {
                EXIT_OK
            } else {
                EXIT_REJECTED
            })
        }
        Command::Query {
            dir,
            connect,
            key,
            grant,
            server_key,
            sql,
            format,
            as_of,
            runs,
            deadline,
            strict,
        } => {
            let as_of = parse_date(as_of.as_deref(), "--as-of")?;
            if let Some(connect) = connect {
                let deadline_ms = parse_duration_ms(&deadline)?;
                let server_key = server_key
                    .as_deref()
                    .map(mesh_cli::parse_public_key)
                    .transpose()?;
                let options = tiermesh::grant_cli::FederatedQuery {
                    connect,
                    key: key.context("--key is required with --connect")?,
                    grant: grant.context("--grant is required with --connect")?,
                    sql,
                    as_of,
                    deadline_ms,
                    server_key,
                };
                let answered = tiermesh::grant_cli::query(&options, runs)?;
                let answer = &answered.answer;
                if strict && !answer.coverage.missing.is_empty() {
                    eprint!("{}", tiermesh::grant_cli::coverage_text(answer));
                    bail!(
                        "--strict: {} regions did not answer",
                        answer.coverage.missing.len()
                    );
                }
                print!("{}", tiermesh::grant_cli::render_answer(&answered, format)?);
                eprint!("{}", tiermesh::grant_cli::coverage_text(answer));
                return Ok(EXIT_OK);
            }
            let dir =
                dir.context("give --dir DIR (local) or --connect ADDR --key FILE --grant FILE")?;
            let node = NodeDir::open(&dir)?;
            let plan = tiermesh_federation::query::plan(&sql, as_of)?;
            let store = node.open_store(&StoreOptions::default())?;
            let mut timings = Vec::with_capacity(runs.max(1));
            let mut result = None;
            for _ in 0..runs.max(1) {
                let started = std::time::Instant::now();
                result = Some(tiermesh_federation::query::execute(&plan, store.image()));
                timings.push(started.elapsed());
            }
            timings.sort();
            let elapsed = timings[timings.len() / 2];
            let result = result.context("the query did not run")?;
            print!(
                "{}",
                render(&result, format, store.image().data_version, elapsed)?
            );
            Ok(EXIT_OK)
        }
        Command::Grant { which } => grant_command(which),
        Command::Audit { which } => audit_command(which),
        Command::Gen {
            region,
            households,
            seed,
            out,
            as_of,
        } => {
            let options = gen::GenOptions {
                region: parse_region(&region)?,
                households,
                seed,
                out: out.clone(),
                today: parse_date(as_of.as_deref(), "--as-of")?,
            };
            let summary = gen::generate(&options)?;
            println!(
                "wrote {} households and {} persons in {} counties under {}",
                summary.households,
                summary.persons,
                summary.counties.len(),
                out.display()
            );
            Ok(EXIT_OK)
        }
        Command::Keygen { out } => {
            let key = mesh_cli::keygen(&out)?;
            println!("wrote {}\npublic key {key}", out.display());
            Ok(EXIT_OK)
        }
        Command::Mesh { which } => match which {
            MeshCommand::Create { dir, officer, addr } => {
                let officer = mesh_cli::parse_public_key(&officer)?;
                let raft_id = mesh_cli::create(&dir, officer, &addr)?;
                println!(
                    "created a mesh: this node is its first voter (raft id {raft_id:016x}) at {addr}; \
                     root officer {officer}\nstart it with: tiermesh run --dir {} --listen {addr}",
                    dir.display()
                );
                Ok(EXIT_OK)
            }
            MeshCommand::Status {
                connect,
                key,
                server_key,
                format,
                fresh,
            } => {
                let server_key = server_key
                    .as_deref()
                    .map(mesh_cli::parse_public_key)
                    .transpose()?;
                let status = mesh_cli::status(&key, &connect, server_key, fresh)?;
                print!("{}", mesh_cli::render_status(&status, format)?);
                Ok(EXIT_OK)
            }
            MeshCommand::Promote(args) => role(args, true),
            MeshCommand::Demote(args) => role(args, false),
        },
        Command::Node { which } => match which {
            NodeCommand::Register {
                officer_key,
                pubkey,
                region,
                addr,
                name,
                connect,
                server_key,
            } => {
                let key = mesh_cli::parse_public_key(&pubkey)?;
                let region = mesh_cli::region(&region, "--region")?;
                let registration = tiermesh_federation::meta::NodeRegistration {
                    key,
                    name: name.unwrap_or_else(|| format!("{} node {region}", region.tier())),
                    region,
                    addr: addr.clone(),
                };
                let server_key = server_key
                    .as_deref()
                    .map(mesh_cli::parse_public_key)
                    .transpose()?;
                let index = mesh_cli::register(&officer_key, registration, &connect, server_key)?;
                println!("registered node {key} ({region}, {addr}) at metadata index {index}");
                Ok(EXIT_OK)
            }
        },
        Command::Officer { which } => match which {
            OfficerCommand::Appoint {
                officer_key,
                pubkey,
                jurisdiction,
                connect,
                server_key,
            } => {
                let key = mesh_cli::parse_public_key(&pubkey)?;
                let jurisdiction = mesh_cli::region(&jurisdiction, "--jurisdiction")?;
                let server_key = server_key
                    .as_deref()
                    .map(mesh_cli::parse_public_key)
                    .transpose()?;
                let appointment =
                    tiermesh_federation::meta::OfficerAppointment { key, jurisdiction };
                let index = mesh_cli::appoint(&officer_key, appointment, &connect, server_key)?;
                println!("appointed officer {key} for {jurisdiction} at metadata index {index}");
                Ok(EXIT_OK)
            }
        },
        Command::Run {
            dir,
            listen,
            peers,
            tick_ms,
            operators,
            admin,
        } => {
            tiermesh::init_logging("info");
            mesh_cli::run(&mesh_cli::RunArgs {
                dir,
                listen,
                peers,
                tick_ms,
                operators,
                admin,
            })?;
            Ok(EXIT_OK)
        }
        Command::Status { dir, format } => {
            tiermesh::status::show(&dir, format)?;
            Ok(EXIT_OK)
        }
        Command::Demo(options) => {
            tiermesh::demo::run(&options)?;
            Ok(EXIT_OK)
        }
        Command::Bench { which } => match which {
            BenchCommand::Local(options) => {
                bench::local(&options)?;
                Ok(EXIT_OK)
            }
            BenchCommand::Mesh(options) => {
                tiermesh::bench_mesh::run(&options)?;
                Ok(EXIT_OK)
            }
            BenchCommand::Federated(options) => {
                tiermesh::bench_federated::run(&options)?;
                Ok(EXIT_OK)
            }
        },
    }
}

fn parse_duration_ms(text: &str) -> Result<u64> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(seconds) = text.strip_suffix('s') {
        (seconds, 1000)
    } else {
        (text, 1000)
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("--deadline '{text}' is not a duration like 5s or 800ms"))?;
    Ok(value * scale)
}

fn link_args(flags: LinkFlags) -> Result<tiermesh::grant_cli::LinkArgs> {
    let scope = flags
        .scope
        .iter()
        .map(|code| mesh_cli::region(code, "--scope"))
        .collect::<Result<Vec<_>>>()?;
    let tables = flags
        .tables
        .iter()
        .map(|name| {
            tiermesh_federation::schema::Table::parse(name)
                .with_context(|| format!("--tables '{name}': households or persons"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(tiermesh::grant_cli::LinkArgs {
        audience: mesh_cli::parse_public_key(&flags.audience)?,
        scope,
        tables,
        dimensions: flags.dimensions,
        measures: flags.measures,
        min_cell: flags.min_cell,
        valid_days: flags.valid_days,
        depth: flags.depth,
    })
}

fn audit_command(which: AuditCommand) -> Result<i32> {
    match which {
        AuditCommand::Show { dir, last, format } => {
            print!("{}", tiermesh::audit_cli::show(&dir, format, last)?);
            Ok(EXIT_OK)
        }
        AuditCommand::Verify {
            dir,
            audit_key,
            connect,
            key,
            server_key,
            state,
        } => {
            if let Some(connect) = connect {
                let server_key = server_key
                    .as_deref()
                    .map(mesh_cli::parse_public_key)
                    .transpose()?;
                let state = state.unwrap_or_else(tiermesh::audit_cli::default_state_file);
                let verdict = tiermesh::audit_cli::verify_remote(
                    &key.context("--key is required with --connect")?,
                    &connect,
                    server_key,
                    &state,
                )?;
                print!("{}", verdict.text);
                return Ok(if verdict.consistent {
                    EXIT_OK
                } else {
                    EXIT_REJECTED
                });
            }
            let dir = dir.context("give --dir DIR or --connect ADDR --key FILE")?;
            let audit_key = audit_key
                .as_deref()
                .map(mesh_cli::parse_public_key)
                .transpose()?;
            match tiermesh::audit_cli::verify_dir(&dir, audit_key) {
                Ok(text) => {
                    print!("{text}");
                    Ok(EXIT_OK)
                }
                Err(error) => {
                    eprintln!("NOT VERIFIED: {error:#}");
                    Ok(EXIT_REJECTED)
                }
            }
        }
    }
}

fn grant_command(which: GrantCommand) -> Result<i32> {
    match which {
        GrantCommand::Issue {
            officer_key,
            link,
            out,
            connect,
        } => {
            let grant = tiermesh::grant_cli::issue(&officer_key, &link_args(link)?, &out)?;
            print!(
                "wrote {}\n{}",
                out.display(),
                tiermesh::grant_cli::grant_text(&grant)
            );
            if let Some(connect) = connect {
                let index = tiermesh::grant_cli::record(&officer_key, &grant, &connect, None)?;
                println!("recorded in the mesh at metadata index {index}");
            }
        }
        GrantCommand::Delegate {
            key,
            grant,
            link,
            out,
            connect,
        } => {
            let grant = tiermesh::grant_cli::delegate(&key, &grant, &link_args(link)?, &out)?;
            print!(
                "wrote {}\n{}",
                out.display(),
                tiermesh::grant_cli::grant_text(&grant)
            );
            if let Some(connect) = connect {
                let index = tiermesh::grant_cli::record(&key, &grant, &connect, None)?;
                println!("recorded in the mesh at metadata index {index}");
            }
        }
        GrantCommand::Revoke {
            officer_key,
            grant_id,
            grant,
            reason,
            connect,
            server_key,
        } => {
            let id = match (grant_id, grant) {
                (Some(text), _) => {
                    tiermesh_federation::grant::parse_id(&text).with_context(|| {
                        format!("--grant-id '{text}' is not a grant id (32 hex digits)")
                    })?
                }
                (None, Some(file)) => tiermesh::grant_cli::read_grant(&file)?.leaf().id,
                (None, None) => bail!("give --grant-id ID or --grant FILE"),
            };
            let server_key = server_key
                .as_deref()
                .map(mesh_cli::parse_public_key)
                .transpose()?;
            let index =
                tiermesh::grant_cli::revoke(&officer_key, id, &reason, &connect, server_key)?;
            println!(
                "revoked grant id {} at metadata index {index}; every link delegated from it is \
                 revoked with it",
                tiermesh_federation::grant::id_hex(&id)
            );
        }
        GrantCommand::List {
            key,
            connect,
            region,
            server_key,
            format,
        } => {
            let region = region
                .as_deref()
                .map(|code| mesh_cli::region(code, "--region"))
                .transpose()?;
            let server_key = server_key
                .as_deref()
                .map(mesh_cli::parse_public_key)
                .transpose()?;
            let list = tiermesh::grant_cli::list(&key, &connect, region, server_key)?;
            print!("{}", tiermesh::grant_cli::render_list(&list, format)?);
        }
        GrantCommand::Show { file, format } => {
            let grant = tiermesh::grant_cli::read_grant(&file)?;
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&tiermesh::grant_cli::grant_json(&grant))?
                ),
                _ => print!("{}", tiermesh::grant_cli::grant_text(&grant)),
            }
        }
    }
    Ok(EXIT_OK)
}

fn role(args: RoleArgs, voter: bool) -> Result<i32> {
    let node = mesh_cli::parse_public_key(&args.node)?;
    let server_key = args
        .server_key
        .as_deref()
        .map(mesh_cli::parse_public_key)
        .transpose()?;
    let index = mesh_cli::change_role(&args.officer_key, node, voter, &args.connect, server_key)?;
    println!(
        "node {node} is now a {} (configuration index {index})",
        if voter { "voter" } else { "learner" }
    );
    Ok(EXIT_OK)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FATAL as u8)
        }
    }
}
