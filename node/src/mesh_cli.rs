//! The mesh commands: `keygen`, `mesh create|status|promote|demote`, `node register`,
//! `officer appoint` and `run`.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::meta::{
    sign_appointment, sign_registration, sign_role_change, MetaCommand, MetaState,
    NodeRegistration, OfficerAppointment, RoleChange,
};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::wire::{MeshStatus, Message};
use tiermesh_storage::StoreOptions;

use crate::client::{load_key, resolve, Session};
use crate::config::NodeDir;
use crate::mesh::{self, RunOptions};
use crate::output::Format;

/// Writes a new Ed25519 key to `out` (PKCS#8, mode 0600); refuses to overwrite.
pub fn keygen(out: &Path) -> Result<PublicKey> {
    let key = SigningKey::generate(&ring::rand::SystemRandom::new())?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
    file.write_all(key.pkcs8())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(key.public_key())
}

/// Parses a public key given on the command line, or read from a key file.
pub fn parse_public_key(text: &str) -> Result<PublicKey> {
    if let Ok(key) = text.parse::<PublicKey>() {
        return Ok(key);
    }
    let path = Path::new(text);
    if path.exists() {
        return Ok(load_key(path)?.public_key());
    }
    bail!("'{text}' is neither a 64-hex-digit public key nor a key file")
}

/// `tiermesh mesh create`: makes this node the first voter of a new mesh, with `officer` as the
/// root security officer (national jurisdiction).
pub fn create(dir: &Path, officer: PublicKey, addr: &str) -> Result<u64> {
    resolve(addr)?;
    let node = NodeDir::open(dir)?;
    let key = node.signing_key()?;
    let store = node.open_store(&StoreOptions::default())?;
    let mut log = store.raft_log()?;
    if log.is_initialized() {
        bail!(
            "{} is already part of a mesh; refusing to create another",
            dir.display()
        );
    }
    let registration = NodeRegistration {
        key: key.public_key(),
        name: node.config.name.clone(),
        region: node.config.region_code()?,
        addr: addr.to_string(),
    };
    let mut state = MetaState::default();
    state
        .apply(
            1,
            &MetaCommand::Bootstrap {
                node: registration,
                root_officer: officer,
            },
        )
        .context("bootstrapping the metadata")?;
    let raft_id = tiermesh_federation::meta::raft_id_of(&key.public_key());
    log.bootstrap(&[raft_id], &state.to_snapshot())?;
    Ok(raft_id)
}

/// Options of `tiermesh run`.
#[derive(Clone, Debug)]
pub struct RunArgs {
    pub dir: PathBuf,
    /// Overrides `[mesh] listen`.
    pub listen: Option<String>,
    /// Added to `[mesh] peers`.
    pub peers: Vec<String>,
    /// Overrides `[mesh] tick_ms`.
    pub tick_ms: Option<u64>,
    /// Operator keys (hex or key files) allowed to import online, besides `[mesh] operators`.
    pub operators: Vec<String>,
    /// Overrides `[mesh] admin`: the TCP address of the admin HTTP port.
    pub admin: Option<String>,
}

/// The folder of the node directory where online imports are staged.
pub const STAGING_FOLDER: &str = "incoming";

/// Where a node listens when neither the command line nor node.toml says.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7400";

/// Parses `KEY@HOST:PORT`.
pub fn parse_peer(text: &str) -> Result<(PublicKey, SocketAddr)> {
    let (key, addr) = text
        .split_once('@')
        .with_context(|| format!("--peer '{text}' must be KEY@HOST:PORT"))?;
    Ok((
        key.parse()
            .with_context(|| format!("--peer '{text}': key"))?,
        resolve(addr)?,
    ))
}

/// `tiermesh run`: serves until SIGINT or SIGTERM.
pub fn run(args: &RunArgs) -> Result<()> {
    let node = NodeDir::open(&args.dir)?;
    let key = node.signing_key()?;
    let store = node.open_store(&StoreOptions::default())?;
    let log = store.raft_log()?;
    let store = std::sync::Arc::new(std::sync::Mutex::new(store));
    let settings = &node.config.mesh;
    let peers = settings
        .peers
        .iter()
        .chain(&args.peers)
        .map(|text| parse_peer(text))
        .collect::<Result<Vec<_>>>()?;
    let listen_text = args
        .listen
        .clone()
        .or_else(|| settings.listen.clone())
        .unwrap_or_else(|| LISTEN_DEFAULT.to_string());
    let listen = resolve(&listen_text)?;
    let tick_ms = args
        .tick_ms
        .or(settings.tick_ms)
        .unwrap_or(crate::raft_driver::TICK_MS_DEFAULT);
    let operators = settings
        .operators
        .iter()
        .chain(&args.operators)
        .map(|text| parse_public_key(text).with_context(|| format!("operator '{text}'")))
        .collect::<Result<Vec<_>>>()?;
    let admin = args
        .admin
        .clone()
        .or_else(|| settings.admin.clone())
        .map(|text| resolve(&text).with_context(|| format!("admin address '{text}'")))
        .transpose()?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut running = mesh::start(
            key,
            log,
            std::sync::Arc::clone(&store),
            &RunOptions {
                listen,
                bootstrap_peers: peers,
                tick_ms,
                import: Some(crate::online_import::ImportSettings {
                    staging: node.path.join(STAGING_FOLDER),
                    jurisdiction: node.config.region_code()?,
                    operators,
                }),
                audit_dir: Some(node.path.join(crate::audit_cli::AUDIT_FOLDER)),
                metrics: std::sync::Arc::clone(&metrics),
            },
        )?;
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("listening on {}", running.addr);
        let _admin = match &admin {
            Some(addr) => {
                let server =
                    crate::metrics::AdminServer::start(*addr, metrics, running.state_reader())?;
                println!("admin on http://{}", server.addr);
                tracing::info!(addr = %server.addr, "admin port: /metrics, /healthz");
                Some(server)
            }
            None => None,
        };
        tracing::info!(addr = %running.addr, region = %node.config.region, "node running");
        tokio::select! {
            signal = wait_for_shutdown() => {
                signal?;
                tracing::info!("shutting down");
                running.stop().await
            }
            () = running.driver_ended() => {
                let error = running.stop().await.err();
                Err(error.unwrap_or_else(|| anyhow::anyhow!("the Raft driver stopped")))
                    .context("the node cannot go on")
            }
        }
    })?;
    drop(store);
    Ok(())
}

/// Resolves at SIGINT or SIGTERM.
pub async fn wait_for_shutdown() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// `tiermesh node register`: an officer registers a node.
pub fn register(
    officer_key: &Path,
    registration: NodeRegistration,
    connect: &str,
    server_key: Option<PublicKey>,
) -> Result<u64> {
    let officer = load_key(officer_key)?;
    let command = MetaCommand::RegisterNode(sign_registration(&officer, registration));
    crate::client::block_on(async {
        let session = Session::connect(&officer, connect, server_key).await?;
        let index = session.commit(&Message::Propose { command }).await;
        session.close().await;
        index
    })
}

/// `tiermesh officer appoint`: an officer appoints another inside its jurisdiction.
pub fn appoint(
    officer_key: &Path,
    appointment: OfficerAppointment,
    connect: &str,
    server_key: Option<PublicKey>,
) -> Result<u64> {
    let officer = load_key(officer_key)?;
    let command = MetaCommand::AppointOfficer(sign_appointment(&officer, appointment));
    crate::client::block_on(async {
        let session = Session::connect(&officer, connect, server_key).await?;
        let index = session.commit(&Message::Propose { command }).await;
        session.close().await;
        index
    })
}

/// `tiermesh mesh promote|demote`.
pub fn change_role(
    officer_key: &Path,
    node: PublicKey,
    voter: bool,
    connect: &str,
    server_key: Option<PublicKey>,
) -> Result<u64> {
    let officer = load_key(officer_key)?;
    let nonce = crate::random_u64()?;
    let change = sign_role_change(&officer, RoleChange { node, voter, nonce });
    crate::client::block_on(async {
        let session = Session::connect(&officer, connect, server_key).await?;
        let index = session.commit(&Message::ChangeRole(change)).await;
        session.close().await;
        index
    })
}

/// `tiermesh mesh status`.
pub fn status(
    key_file: &Path,
    connect: &str,
    server_key: Option<PublicKey>,
    fresh: bool,
) -> Result<MeshStatus> {
    let key = load_key(key_file)?;
    crate::client::block_on(async {
        let session = Session::connect(&key, connect, server_key).await?;
        let status = session.status(fresh).await;
        session.close().await;
        status
    })
}

/// Renders a mesh status.
pub fn render_status(status: &MeshStatus, format: Format) -> Result<String> {
    match format {
        Format::Json => Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&status_json(status))?
        )),
        Format::Csv | Format::Table => {
            let header = [
                "node",
                "name",
                "tier",
                "region",
                "address",
                "role",
                "matched",
                "lag",
                "reachable",
            ];
            let mut rows = Vec::with_capacity(status.nodes.len());
            let mut nodes: Vec<_> = status.nodes.iter().collect();
            nodes.sort_by_key(|node| (node.region, node.key));
            for node in nodes {
                let role = if status.leader == Some(node.raft_id) {
                    format!("{} (leader)", node.role.as_str())
                } else {
                    node.role.as_str().to_string()
                };
                let csv = format == Format::Csv;
                rows.push([
                    if csv {
                        node.key.to_string()
                    } else {
                        node.key.to_string()[..16].to_string()
                    },
                    node.name.clone(),
                    node.tier.to_string(),
                    node.region.to_string(),
                    node.addr.clone(),
                    role,
                    node.matched.map_or("-".into(), |m| m.to_string()),
                    node.matched
                        .map_or("-".into(), |m| status.commit.saturating_sub(m).to_string()),
                    node.reachable
                        .map_or("?".into(), |r| if r { "yes".into() } else { "no".into() }),
                ]);
            }
            if format == Format::Csv {
                let mut writer = csv::Writer::from_writer(Vec::new());
                writer.write_record(header)?;
                for row in &rows {
                    writer.write_record(row)?;
                }
                return Ok(String::from_utf8(writer.into_inner()?)?);
            }
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED);
            table.set_header(header);
            for row in rows {
                table.add_row(row);
            }
            let leader = status.leader_node().map_or("none".to_string(), |node| {
                format!("{} ({})", node.name, node.addr)
            });
            Ok(format!(
                "{table}\nleader: {leader}; term {}; commit {}; applied {} (answered by {})\n",
                status.term,
                status.commit,
                status.applied,
                &status.responder.to_string()[..16]
            ))
        }
    }
}

fn status_json(status: &MeshStatus) -> serde_json::Value {
    serde_json::json!({
        "responder": status.responder.to_string(),
        "leader": status.leader.map(|id| format!("{id:016x}")),
        "term": status.term,
        "commit": status.commit,
        "applied": status.applied,
        "nodes": status.nodes.iter().map(|node| serde_json::json!({
            "key": node.key.to_string(),
            "raft_id": format!("{:016x}", node.raft_id),
            "name": node.name,
            "tier": node.tier.name(),
            "region": node.region.to_string(),
            "addr": node.addr,
            "role": node.role.as_str(),
            "leader": status.leader == Some(node.raft_id),
            "matched": node.matched,
            "reachable": node.reachable,
        })).collect::<Vec<_>>(),
    })
}

/// Parses a region code argument.
pub fn region(text: &str, flag: &str) -> Result<RegionCode> {
    text.parse()
        .with_context(|| format!("{flag} '{text}' is not a region code"))
}
