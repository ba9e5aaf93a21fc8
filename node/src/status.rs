//! `tiermesh status --dir DIR`: the node at the operator's console.
//!
//! Works whether the node runs or not: the database is read read-only (beside a running node,
//! as of the moment of reading), the audit log is verified from its file, and when the node
//! answers at its listen address (asked as itself, with its own key) its live Raft view is shown
//! too.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tiermesh_federation::meta::{raft_id_of, MetaState};
use tiermesh_federation::wire::MeshStatus;
use tiermesh_storage::audit_log::read_log;
use tiermesh_storage::Store;

use crate::audit_cli::{AUDIT_FOLDER, AUDIT_KEY_FILE};
use crate::client::{load_key, Session};
use crate::config::{NodeDir, DB_FOLDER};
use crate::output::Format;
use tiermesh_storage::audit_log::AUDIT_LOG_FILE;

/// How long `status` waits for the running node to answer at its listen address.
pub const LIVE_WAIT_MS: u64 = 2_000;

/// Prints the node's status.
pub fn show(dir: &Path, format: Format) -> Result<()> {
    let report = gather(dir)?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table | Format::Csv => print!("{}", render(&report)),
    }
    Ok(())
}

/// Everything `status` reports, as JSON.
pub fn gather(dir: &Path) -> Result<serde_json::Value> {
    let node = NodeDir::open(dir)?;
    let key = node.signing_key()?;
    let own = key.public_key();
    let config = &node.config;

    let peek = Store::peek(&node.path.join(DB_FOLDER))
        .with_context(|| format!("reading the database of {}", node.path.display()))?;
    let hard_state = peek.raft.hard_state();
    let conf_state = peek.raft.conf_state();
    let applied = peek.raft.applied()?;
    let (applied_index, meta) = match applied {
        Some((index, bytes)) => (index, MetaState::from_snapshot(&bytes).ok()),
        None => (0, None),
    };
    let raft_id = raft_id_of(&own);
    let stored_role = if conf_state.voters.contains(&raft_id) {
        "voter"
    } else if conf_state.learners.contains(&raft_id) {
        "learner"
    } else if peek.raft.is_initialized() {
        "not in the Raft configuration"
    } else {
        "not part of a mesh yet"
    };
    let meta_json = meta.as_ref().map(|state| {
        json!({
            "nodes": state.nodes().count(),
            "officers": state.officers().count(),
            "grants": state.grants().len(),
            "registered_as": state.node(&own).map(|record| json!({
                "name": record.name,
                "region": record.region.to_string(),
                "addr": record.addr,
            })),
        })
    });

    // Where to find it running: node.toml's listen address, else the address it is registered
    // under, else the default.
    let listen = config
        .mesh
        .listen
        .clone()
        .or_else(|| Some(meta.as_ref()?.node(&own)?.addr.clone()))
        .unwrap_or_else(|| crate::mesh_cli::LISTEN_DEFAULT.to_string());
    let audit = audit_summary(&node, &own);
    let live = live_status(&key, &listen);
    let live_json = match &live {
        Ok(status) => {
            let leader = status
                .leader_node()
                .map(|node| format!("{} ({})", node.name, node.addr));
            json!({
                "running": true,
                "addr": listen,
                "role": status.role_label(&own),
                "leader": leader,
                "term": status.term,
                "commit": status.commit,
                "applied": status.applied,
                "nodes": status.nodes.len(),
                "unreachable": status.nodes.iter().filter(|node| node.reachable == Some(false)).count(),
            })
        }
        Err(error) => json!({
            "running": false,
            "addr": listen,
            "why": format!("{error:#}"),
        }),
    };
    Ok(json!({
        "dir": node.path.display().to_string(),
        "name": config.name,
        "region": config.region,
        "tier": config.tier,
        "standard_version": config.standard_version,
        "public_key": own.to_string(),
        "admin": config.mesh.admin,
        "store": {
            "households": peek.households,
            "persons": peek.persons,
            "data_version": peek.data_version,
        },
        "raft_stored": {
            "role": stored_role,
            "term": hard_state.term,
            "commit": hard_state.commit,
            "applied": applied_index,
            "voters": conf_state.voters.len(),
            "learners": conf_state.learners.len(),
        },
        "metadata": meta_json,
        "audit": audit,
        "live": live_json,
    }))
}

fn audit_summary(node: &NodeDir, own: &tiermesh_crypto::PublicKey) -> serde_json::Value {
    let folder = node.path.join(AUDIT_FOLDER);
    let log = folder.join(AUDIT_LOG_FILE);
    if !log.exists() {
        return json!({ "records": 0, "verified": null, "note": "no audit log yet (the node has not run)" });
    }
    let checked = load_key(&folder.join(AUDIT_KEY_FILE))
        .and_then(|audit_key| Ok(read_log(&log, own, &audit_key.public_key())?));
    match checked {
        Ok(contents) => json!({
            "records": contents.records.len(),
            "verified": true,
            "torn_bytes": contents.torn_bytes,
            "last_time_ms": contents.records.last().map(|record| record.time_ms),
        }),
        Err(error) => json!({
            "verified": false,
            "error": format!("{error:#}"),
        }),
    }
}

fn live_status(key: &tiermesh_crypto::SigningKey, listen: &str) -> Result<MeshStatus> {
    crate::client::block_on(async {
        let asked = tokio::time::timeout(Duration::from_millis(LIVE_WAIT_MS), async {
            let session = Session::connect(key, listen, Some(key.public_key())).await?;
            let status = session.status(false).await;
            session.close().await;
            status
        })
        .await;
        match asked {
            Ok(status) => status,
            Err(_) => anyhow::bail!("no answer at {listen} within {LIVE_WAIT_MS} ms"),
        }
    })
}

fn render(report: &serde_json::Value) -> String {
    let get = |path: &[&str]| -> String {
        let mut value = report;
        for step in path {
            value = &value[*step];
        }
        match value {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    };
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut row = |label: &str, value: String| {
        table.add_row([label.to_string(), value]);
    };
    row("node", format!("{} ({})", get(&["name"]), get(&["dir"])));
    row(
        "region",
        format!("{} ({})", get(&["region"]), get(&["tier"])),
    );
    row("public key", get(&["public_key"]));
    row(
        "rows",
        format!(
            "{} households, {} persons",
            get(&["store", "households"]),
            get(&["store", "persons"])
        ),
    );
    row("data version", get(&["store", "data_version"]));
    if report["live"]["running"] == json!(true) {
        row(
            "running",
            format!(
                "yes, at {}: {} in term {}, leader {}",
                get(&["live", "addr"]),
                get(&["live", "role"]),
                get(&["live", "term"]),
                get(&["live", "leader"])
            ),
        );
        row(
            "metadata",
            format!(
                "applied {} of {} committed; {} nodes ({} unreachable)",
                get(&["live", "applied"]),
                get(&["live", "commit"]),
                get(&["live", "nodes"]),
                get(&["live", "unreachable"])
            ),
        );
    } else {
        row(
            "running",
            format!(
                "no answer at {}: {}",
                get(&["live", "addr"]),
                get(&["live", "why"])
            ),
        );
        row(
            "raft (stored)",
            format!(
                "{}; term {}, commit {}, applied {}; {} voters, {} learners",
                get(&["raft_stored", "role"]),
                get(&["raft_stored", "term"]),
                get(&["raft_stored", "commit"]),
                get(&["raft_stored", "applied"]),
                get(&["raft_stored", "voters"]),
                get(&["raft_stored", "learners"])
            ),
        );
    }
    if !report["metadata"].is_null() {
        row(
            "registry (stored)",
            format!(
                "{} nodes, {} officers, {} grants",
                get(&["metadata", "nodes"]),
                get(&["metadata", "officers"]),
                get(&["metadata", "grants"])
            ),
        );
    }
    let audit = match report["audit"]["verified"].as_bool() {
        Some(true) => format!("{} records, verified", get(&["audit", "records"])),
        Some(false) => format!("DOES NOT VERIFY: {}", get(&["audit", "error"])),
        None => get(&["audit", "note"]),
    };
    row("audit log", audit);
    row("admin port", get(&["admin"]));
    format!("{table}\n")
}
