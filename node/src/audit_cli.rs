//! The node's audit log on the command line and on the wire: the audit key (`DIR/audit/
//! audit.key`, made at first start), `tiermesh audit show|verify --dir` offline, the signed
//! heads a running node hands out, and `tiermesh audit verify --connect`, which keeps the last
//! head it saw of every node in a state file and flags any head that does not extend it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use tiermesh_crypto::audit::{consistency_proof, verify_consistency, verify_head, TreeHead};
use tiermesh_crypto::hex;
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::wire::{AuditHeadReply, Message};
use tiermesh_storage::audit_log::{read_log, AuditLog, Decision, AUDIT_LOG_FILE};

use crate::client::{load_key, Session};
use crate::config::NodeDir;
use crate::output::Format;

/// The folder of a node directory holding the audit log and key.
pub const AUDIT_FOLDER: &str = "audit";
/// The audit key's file inside it (Ed25519, PKCS#8, mode 0600).
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// The audit key in `dir`, made (mode 0600) if there is none yet.
pub fn audit_key(dir: &Path) -> Result<SigningKey> {
    let path = dir.join(AUDIT_KEY_FILE);
    if !path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::mesh_cli::keygen(&path)?;
    }
    load_key(&path)
}

/// Opens (and verifies) the audit log in `dir` for the node `node`.
pub fn open_log(dir: &Path, node: PublicKey) -> Result<AuditLog> {
    let key = audit_key(dir)?;
    AuditLog::open(dir, node, key).with_context(|| {
        format!(
            "the audit log in {} does not verify; the node will not serve until it does \
             (`tiermesh audit verify --dir` shows the damage)",
            dir.display()
        )
    })
}

/// A running node's answer to `AuditHeadRequest`.
pub fn head_reply(audit: Option<&Arc<Mutex<AuditLog>>>, known_size: Option<u64>) -> Message {
    let Some(audit) = audit else {
        return Message::Error {
            message: "this node keeps no audit log".to_string(),
        };
    };
    let Ok(log) = audit.lock() else {
        return Message::Error {
            message: "the audit log is unavailable".to_string(),
        };
    };
    // A size past the log's gets no proof: the asker sees the log shrank.
    let proof = match known_size {
        Some(size) if size > 0 && size <= log.size() => match consistency_proof(log.leaves(), size)
        {
            Ok(proof) => proof,
            Err(error) => {
                return Message::Error {
                    message: format!("no consistency proof from size {size}: {error}"),
                }
            }
        },
        _ => Vec::new(),
    };
    let last = log.last_head();
    Message::AuditHead(Box::new(AuditHeadReply {
        audit_key: log.audit_key(),
        head: last.map(|signed| signed.head.clone()),
        signature: last
            .map(|signed| signed.signature.clone())
            .unwrap_or_default(),
        proof,
    }))
}

fn node_and_audit_key(dir: &Path, audit_key: Option<PublicKey>) -> Result<(NodeDir, PublicKey)> {
    let node = NodeDir::open(dir)?;
    let key = match audit_key {
        Some(key) => key,
        None => {
            let path = node.path.join(AUDIT_FOLDER).join(AUDIT_KEY_FILE);
            load_key(&path)
                .with_context(|| {
                    format!(
                        "no audit key at {} (has the node run yet?); give --audit-key",
                        path.display()
                    )
                })?
                .public_key()
        }
    };
    Ok((node, key))
}

/// `tiermesh audit show --dir`: the records, newest last (`last` of them when given).
pub fn show(dir: &Path, format: Format, last: Option<usize>) -> Result<String> {
    let (node, audit_key) = node_and_audit_key(dir, None)?;
    let node_key = node.signing_key()?.public_key();
    let path = node.path.join(AUDIT_FOLDER).join(AUDIT_LOG_FILE);
    let contents = read_log(&path, &node_key, &audit_key)?;
    let skip = last.map_or(0, |last| contents.records.len().saturating_sub(last));
    let records = &contents.records[skip..];
    if format == Format::Json {
        let mut out = String::new();
        for record in records {
            out.push_str(&serde_json::to_string(record)?);
            out.push('\n');
        }
        return Ok(out);
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "seq",
        "time (UTC)",
        "role",
        "query",
        "grant",
        "requester",
        "rows",
        "groups",
        "suppr.",
        "decision",
        "index",
    ]);
    for record in records {
        let decision = match record.decision {
            Decision::Answered => "answered".to_string(),
            Decision::Refused => format!("refused: {}", record.reason),
        };
        table.add_row([
            record.seq.to_string(),
            utc(record.time_ms),
            record.role.clone(),
            record.query_id.chars().take(12).collect(),
            record.grant_id.chars().take(12).collect(),
            record.requester.chars().take(12).collect(),
            record.rows_scanned.to_string(),
            record.groups_returned.to_string(),
            record.cells_suppressed.to_string(),
            decision,
            record.metadata_index.to_string(),
        ]);
    }
    Ok(format!(
        "{table}\n{} of {} records; audit key {audit_key}\n",
        records.len(),
        contents.records.len()
    ))
}

/// `YYYY-MM-DD HH:MM:SS` of unix milliseconds.
fn utc(time_ms: u64) -> String {
    let seconds = time_ms / 1000;
    let date = tiermesh_federation::date::Date::from_days((seconds / 86_400) as i32);
    let day = seconds % 86_400;
    format!(
        "{date} {:02}:{:02}:{:02}",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// `tiermesh audit verify --dir`: checks the whole log; an error names the first damaged line.
pub fn verify_dir(dir: &Path, audit_key: Option<PublicKey>) -> Result<String> {
    let (node, audit_key) = node_and_audit_key(dir, audit_key)?;
    let node_key = node.signing_key()?.public_key();
    let path = node.path.join(AUDIT_FOLDER).join(AUDIT_LOG_FILE);
    let contents = read_log(&path, &node_key, &audit_key)?;
    let mut text = format!(
        "{}: {} records, {} signed heads; every record is where its number says, every head \
         covers exactly the records before it with their Merkle root and verifies with audit key \
         {audit_key}\n",
        path.display(),
        contents.records.len(),
        contents.heads.len()
    );
    if let Some(head) = contents.heads.last() {
        text.push_str(&format!(
            "newest head: size {} root {} at {}\n",
            head.head.size,
            hex::encode(&head.head.root),
            utc(head.head.time_ms)
        ));
    }
    if contents.torn_bytes > 0 {
        text.push_str(&format!(
            "{} bytes after the newest head are a torn append (a crash before its answer left); \
             the node cuts them at its next start\n",
            contents.torn_bytes
        ));
    }
    Ok(text)
}

/// What a verifier remembers of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHead {
    pub audit_key: String,
    pub size: u64,
    pub root: String,
    pub time_ms: u64,
}

/// The verifier's state file: the last head seen, by node key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHeads {
    pub nodes: BTreeMap<String, SeenHead>,
}

/// The default state file: `$HOME/.tiermesh/audit-heads.json`.
pub fn default_state_file() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".tiermesh").join("audit-heads.json")
}

/// What `audit verify --connect` found.
#[derive(Debug)]
pub struct RemoteVerdict {
    pub text: String,
    /// False when the head does not extend the one seen before (a fork, a shrink, a new key).
    pub consistent: bool,
}

/// `tiermesh audit verify --connect`: fetches the node's signed head with a consistency proof
/// from the head seen last time, checks both, and remembers the new head (only if it extends).
pub fn verify_remote(
    key_file: &Path,
    connect: &str,
    server_key: Option<PublicKey>,
    state_file: &Path,
) -> Result<RemoteVerdict> {
    let key = load_key(key_file)?;
    let mut state: SeenHeads = match std::fs::read(state_file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an audit state file", state_file.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => SeenHeads::default(),
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", state_file.display()))
        }
    };
    let (node, reply, seen) = crate::client::block_on(async {
        let session = Session::connect(&key, connect, server_key).await?;
        let node = session
            .server_key
            .ok_or_else(|| anyhow!("the node presented no key"))?;
        let seen = state.nodes.get(&node.to_string()).cloned();
        let answer = session
            .request(&Message::AuditHeadRequest {
                known_size: seen.as_ref().map(|seen| seen.size),
            })
            .await;
        session.close().await;
        match answer? {
            Message::AuditHead(reply) => Ok((node, *reply, seen)),
            Message::Error { message } => bail!("the node answered: {message}"),
            other => bail!("unexpected answer {other:?}"),
        }
    })?;
    let Some(head) = reply.head.clone() else {
        return Ok(RemoteVerdict {
            text: format!(
                "node {node}: its audit log is empty (audit key {})\n",
                reply.audit_key
            ),
            consistent: seen.is_none_or(|seen| seen.size == 0),
        });
    };
    if head.node != node {
        bail!(
            "the head names node {}, but {node} answered: refusing it",
            head.node
        );
    }
    verify_head(&reply.audit_key, &head, &reply.signature).map_err(|_| {
        anyhow!(
            "node {node}: its head's signature does not verify with the audit key it names ({})",
            reply.audit_key
        )
    })?;
    let mut text = format!(
        "node {node}: signed head size {} root {} at {} (audit key {})\n",
        head.size,
        hex::encode(&head.root),
        utc(head.time_ms),
        reply.audit_key
    );
    let problem = seen
        .as_ref()
        .and_then(|seen| does_not_extend(seen, &head, &reply));
    if let Some(problem) = &problem {
        text.push_str(&format!("NOT CONSISTENT: {problem}\n"));
        return Ok(RemoteVerdict {
            text,
            consistent: false,
        });
    }
    match &seen {
        Some(seen) => text.push_str(&format!(
            "extends the head seen before (size {} at {}): consistency proof of {} hashes verifies\n",
            seen.size,
            utc(seen.time_ms),
            reply.proof.len()
        )),
        None => text.push_str("first head seen of this node; remembered\n"),
    }
    state.nodes.insert(
        node.to_string(),
        SeenHead {
            audit_key: reply.audit_key.to_string(),
            size: head.size,
            root: hex::encode(&head.root),
            time_ms: head.time_ms,
        },
    );
    if let Some(parent) = state_file.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(state_file, serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", state_file.display()))?;
    Ok(RemoteVerdict {
        text,
        consistent: true,
    })
}

/// Why `head` does not extend `seen`, if it does not.
fn does_not_extend(seen: &SeenHead, head: &TreeHead, reply: &AuditHeadReply) -> Option<String> {
    if seen.audit_key != reply.audit_key.to_string() {
        return Some(format!(
            "the node's audit key changed from {} to {}",
            seen.audit_key, reply.audit_key
        ));
    }
    if head.size < seen.size {
        return Some(format!(
            "the log shrank from {} records (seen at {}) to {}: records were deleted",
            seen.size,
            utc(seen.time_ms),
            head.size
        ));
    }
    let Some(old_root) = hex::decode_array::<32>(&seen.root) else {
        return Some("the state file's root is not valid hex".to_string());
    };
    match verify_consistency(seen.size, head.size, &old_root, &head.root, &reply.proof) {
        Ok(()) => None,
        Err(error) => Some(format!(
            "a fork: the node's history no longer contains the head of {} records seen at {} \
             ({error}); records seen then were rewritten",
            seen.size,
            utc(seen.time_ms)
        )),
    }
}
