//! The node's audit log ("数过留痕"): every sub-query the node answers or refuses is one record,
//! appended durably before the answer leaves. The file is JSON lines, readable and greppable:
//! record lines, each followed by a tree-head line that the node signs with its dedicated audit
//! key. Records are the leaves of an RFC 9162 Merkle tree (leaf = the record line's exact
//! bytes), so an edited, deleted, reordered or inserted record breaks the signed root of every
//! head after it, and a rewritten history cannot prove itself consistent with a head a verifier
//! kept ([`tiermesh_crypto::audit::verify_consistency`]).
//!
//! Boundary: the file is read back as untrusted (a line is at most [`AUDIT_LINE_BYTES_MAX`]);
//! damage is an error naming the line and what is wrong, never a panic. A torn tail (a crash in
//! the middle of an append, whose answer never left) is cut back to the last signed head when
//! the log is opened for writing.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiermesh_crypto::audit::{leaf_hash, sign_head, verify_head, Frontier, TreeHead};
use tiermesh_crypto::hex;
use tiermesh_crypto::{PublicKey, SigningKey};

use crate::error::StorageError;

/// The longest line the log may hold, in bytes (a record's reason is cut to fit).
pub const AUDIT_LINE_BYTES_MAX: usize = 64 * 1024;
/// The longest refusal reason kept in a record, in bytes.
pub const AUDIT_REASON_BYTES_MAX: usize = 4 * 1024;
/// The most regions a record lists as the scope it touched.
pub const AUDIT_SCOPE_REGIONS_MAX: usize = 64;
/// The log's file name inside the audit folder.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// What a node decided about a sub-query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Answered,
    Refused,
}

/// One audited sub-query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 0, 1, 2, ... in file order.
    pub seq: u64,
    /// When the node decided (unix milliseconds, its clock).
    pub time_ms: u64,
    /// The query id (hex), one per federated query across every node.
    pub query_id: String,
    /// The id (hex) of the grant's leaf link.
    pub grant_id: String,
    /// Who asked: the grant leaf's audience (hex public key).
    pub requester: String,
    /// SHA-256 (hex) of the SQL text and the as-of date, as signed by the requester.
    pub plan_digest: String,
    /// "entry" for the node the client asked, "sub" for a node asked by its parent.
    pub role: String,
    /// The regions of this node's own rows the query touched (grant scope within its region).
    pub scope: Vec<String>,
    pub rows_scanned: u64,
    pub groups_returned: u64,
    /// Cells the entry node withheld (primary + secondary); 0 elsewhere.
    pub cells_suppressed: u64,
    pub decision: Decision,
    /// Why it was refused, or empty.
    pub reason: String,
    /// The metadata index the grant was checked at.
    pub metadata_index: u64,
}

/// A signed tree head as a line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLine {
    pub head: HeadFields,
    /// Ed25519 signature (hex) by the audit key over the head.
    pub signature: String,
}

/// The fields of a signed head, as written (hex for keys and hashes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadFields {
    pub node: String,
    pub size: u64,
    pub root: String,
    pub time_ms: u64,
}

/// A signed head with its signature bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHead {
    pub head: TreeHead,
    pub signature: Vec<u8>,
}

/// What reading a log found.
#[derive(Debug)]
pub struct AuditContents {
    pub records: Vec<AuditRecord>,
    /// Every head, in file order (the last one covers every record).
    pub heads: Vec<SignedHead>,
    /// Leaf hashes of the records, in order.
    pub leaves: Vec<[u8; 32]>,
    /// Bytes of the file up to the end of the last signed head.
    pub verified_bytes: u64,
    /// Bytes after that: a torn append, cut when the log is opened for writing.
    pub torn_bytes: u64,
}

/// An open, verified audit log that appends.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The file's length: where the next append starts (kept, not asked of the file each time).
    length: u64,
    node: PublicKey,
    key: SigningKey,
    frontier: Frontier,
    leaves: Vec<[u8; 32]>,
    last_head: Option<SignedHead>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuditLog")
            .field("path", &self.path)
            .field("size", &self.leaves.len())
            .finish()
    }
}

fn damaged(path: &Path, line: u64, reason: impl Into<String>) -> StorageError {
    StorageError::AuditDamaged {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn io_error(path: &Path, operation: &'static str, error: std::io::Error) -> StorageError {
    StorageError::AuditIo {
        path: path.to_path_buf(),
        operation,
        message: error.to_string(),
    }
}

fn head_line(signed: &SignedHead) -> HeadLine {
    HeadLine {
        head: HeadFields {
            node: signed.head.node.to_string(),
            size: signed.head.size,
            root: hex::encode(&signed.head.root),
            time_ms: signed.head.time_ms,
        },
        signature: hex::encode(&signed.signature),
    }
}

fn parse_head(line: &HeadLine) -> Option<SignedHead> {
    Some(SignedHead {
        head: TreeHead {
            node: line.head.node.parse().ok()?,
            size: line.head.size,
            root: hex::decode_array::<32>(&line.head.root)?,
            time_ms: line.head.time_ms,
        },
        signature: hex::decode(&line.signature)?,
    })
}

/// Reads and verifies the log at `path` against `audit_key`: records numbered 0, 1, 2, ... in
/// order; every head signed by `audit_key` for `node`, covering exactly the records before it,
/// with the Merkle root of those records; heads never going back in time. The first problem is
/// an error naming its line. A tail after the last head (a torn append) is reported in
/// `torn_bytes`, not as damage. A missing file is an empty log.
pub fn read_log(
    path: &Path,
    node: &PublicKey,
    audit_key: &PublicKey,
) -> Result<AuditContents, StorageError> {
    let mut contents = AuditContents {
        records: Vec::new(),
        heads: Vec::new(),
        leaves: Vec::new(),
        verified_bytes: 0,
        torn_bytes: 0,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(contents),
        Err(error) => return Err(io_error(path, "opening", error)),
    };
    let total = file
        .metadata()
        .map_err(|error| io_error(path, "reading", error))?
        .len();
    let mut reader = BufReader::new(file);
    let mut frontier = Frontier::default();
    let mut offset = 0u64;
    let mut number = 0u64;
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = (&mut reader)
            .take(AUDIT_LINE_BYTES_MAX as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|error| io_error(path, "reading", error))?;
        if read == 0 {
            break;
        }
        number += 1;
        if buffer.last() != Some(&b'\n') {
            if buffer.len() > AUDIT_LINE_BYTES_MAX {
                return Err(damaged(
                    path,
                    number,
                    format!("a line is longer than {AUDIT_LINE_BYTES_MAX} bytes"),
                ));
            }
            // The last line has no end: an append torn by a crash.
            break;
        }
        offset += read as u64;
        let line = &buffer[..buffer.len() - 1];
        let text = std::str::from_utf8(line)
            .map_err(|_| damaged(path, number, "the line is not UTF-8"))?;
        if text.starts_with("{\"head\":") {
            let parsed: HeadLine = serde_json::from_str(text)
                .map_err(|error| damaged(path, number, format!("not a tree head: {error}")))?;
            let signed = parse_head(&parsed)
                .ok_or_else(|| damaged(path, number, "a tree head field is not valid hex"))?;
            if signed.head.node != *node {
                return Err(damaged(
                    path,
                    number,
                    format!("the head names node {}, not {node}", signed.head.node),
                ));
            }
            if signed.head.size != frontier.size() {
                return Err(damaged(
                    path,
                    number,
                    format!(
                        "the head covers {} records but {} precede it (a record was added or \
                         deleted)",
                        signed.head.size,
                        frontier.size()
                    ),
                ));
            }
            if signed.head.root != frontier.root() {
                return Err(damaged(
                    path,
                    number,
                    format!(
                        "the records before it do not hash to the head's signed root (a record \
                         among the first {} was edited or reordered)",
                        signed.head.size
                    ),
                ));
            }
            if verify_head(audit_key, &signed.head, &signed.signature).is_err() {
                return Err(damaged(
                    path,
                    number,
                    format!("the head's signature does not verify with audit key {audit_key}"),
                ));
            }
            if let Some(previous) = contents.heads.last() {
                if signed.head.time_ms < previous.head.time_ms {
                    return Err(damaged(
                        path,
                        number,
                        "the head is older than the one before",
                    ));
                }
            }
            contents.heads.push(signed);
            contents.verified_bytes = offset;
            continue;
        }
        let record: AuditRecord = serde_json::from_str(text)
            .map_err(|error| damaged(path, number, format!("not an audit record: {error}")))?;
        let expected = contents.records.len() as u64;
        if record.seq != expected {
            return Err(damaged(
                path,
                number,
                format!(
                    "record number {} where {expected} belongs (records deleted, inserted or \
                     reordered)",
                    record.seq
                ),
            ));
        }
        let hash = leaf_hash(line);
        frontier.push(hash);
        contents.leaves.push(hash);
        contents.records.push(record);
    }
    // Records after the last head were never acknowledged (the head is written with them).
    let covered = contents.heads.last().map_or(0, |head| head.head.size) as usize;
    contents.records.truncate(covered);
    contents.leaves.truncate(covered);
    contents.torn_bytes = total - contents.verified_bytes;
    Ok(contents)
}

impl AuditLog {
    /// Opens (creating) the log in `dir`, verifies it, and cuts a torn tail. `node` is the
    /// node's key (named in every head), `key` the dedicated audit key that signs heads.
    pub fn open(dir: &Path, node: PublicKey, key: SigningKey) -> Result<AuditLog, StorageError> {
        std::fs::create_dir_all(dir).map_err(|error| io_error(dir, "creating", error))?;
        let path = dir.join(AUDIT_LOG_FILE);
        let contents = read_log(&path, &node, &key.public_key())?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| io_error(&path, "opening", error))?;
        if contents.torn_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                bytes = contents.torn_bytes,
                "cutting a torn append from the audit log (its answer never left)"
            );
            file.set_len(contents.verified_bytes)
                .map_err(|error| io_error(&path, "truncating", error))?;
            file.sync_all()
                .map_err(|error| io_error(&path, "syncing", error))?;
        }
        let length = file
            .seek(SeekFrom::End(0))
            .map_err(|error| io_error(&path, "seeking", error))?;
        let mut frontier = Frontier::default();
        for leaf in &contents.leaves {
            frontier.push(*leaf);
        }
        Ok(AuditLog {
            path,
            file,
            length,
            node,
            key,
            frontier,
            leaves: contents.leaves,
            last_head: contents.heads.last().cloned(),
        })
    }

    /// Records in the log.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The audit key's public half.
    pub fn audit_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Leaf hashes of every record, in order (for consistency proofs).
    pub fn leaves(&self) -> &[[u8; 32]] {
        &self.leaves
    }

    /// The newest signed head, if any record was written.
    pub fn last_head(&self) -> Option<&SignedHead> {
        self.last_head.as_ref()
    }

    /// Appends `record` (its `seq` is set here) and a signed head over the new tree, in one
    /// write, and syncs the file before returning: once this returns, the record survives a
    /// crash. `time_ms` stamps the head.
    pub fn append(
        &mut self,
        mut record: AuditRecord,
        time_ms: u64,
    ) -> Result<SignedHead, StorageError> {
        record.seq = self.frontier.size();
        if record.reason.len() > AUDIT_REASON_BYTES_MAX {
            let mut cut = AUDIT_REASON_BYTES_MAX;
            while !record.reason.is_char_boundary(cut) {
                cut -= 1;
            }
            record.reason.truncate(cut);
        }
        record.scope.truncate(AUDIT_SCOPE_REGIONS_MAX);
        let line = serde_json::to_vec(&record).map_err(|error| StorageError::AuditIo {
            path: self.path.clone(),
            operation: "encoding a record",
            message: error.to_string(),
        })?;
        let hash = leaf_hash(&line);
        let mut frontier = self.frontier.clone();
        frontier.push(hash);
        let head = TreeHead {
            node: self.node,
            size: frontier.size(),
            root: frontier.root(),
            time_ms: time_ms.max(self.last_head.as_ref().map_or(0, |h| h.head.time_ms)),
        };
        let signed = SignedHead {
            signature: sign_head(&self.key, &head),
            head,
        };
        let head_bytes =
            serde_json::to_vec(&head_line(&signed)).map_err(|error| StorageError::AuditIo {
                path: self.path.clone(),
                operation: "encoding a head",
                message: error.to_string(),
            })?;
        let mut bytes = Vec::with_capacity(line.len() + head_bytes.len() + 2);
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
        bytes.extend_from_slice(&head_bytes);
        bytes.push(b'\n');
        if let Err(error) = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
        {
            // Leave no half record behind: the next append must follow a signed head.
            let _ = self.file.set_len(self.length);
            let _ = self.file.seek(SeekFrom::End(0));
            return Err(io_error(&self.path, "appending to", error));
        }
        self.length += bytes.len() as u64;
        self.frontier = frontier;
        self.leaves.push(hash);
        self.last_head = Some(signed.clone());
        Ok(signed)
    }
}
