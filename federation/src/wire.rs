//! The one wire codec: every message between nodes (and between a client and a node) is a
//! [`Message`], framed by the transport and turned into bytes here and nowhere else.
//!
//! Layout: a 2-byte big-endian [`WIRE_VERSION`], then bincode with fixed-width little-endian
//! integers. Boundary: `decode` takes bytes from the network; it refuses anything it does not
//! fully understand and never allocates past [`MESSAGE_BYTES_MAX`], whatever a length prefix says.

use bincode::Options;
use serde::{Deserialize, Serialize};
use tiermesh_crypto::PublicKey;

use crate::fanout::{Coverage, SubAnswer};
use crate::grant::SignedRequest;
use crate::meta::{MetaCommand, RoleChange, Signed};
use crate::query::QueryResult;
use crate::region::{RegionCode, Tier};

/// The version written in the first two bytes of every message.
pub const WIRE_VERSION: u16 = 1;
/// The largest encoded message, header included, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The length of the version header, in bytes.
pub const HEADER_BYTES: usize = 2;

/// Everything nodes say to each other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// One raft-rs message, encoded by raft's protobuf codec (opaque here).
    Raft { bytes: Vec<u8> },
    /// Ask the leader (forwarded if needed) to commit a metadata command; reply ProposeReply.
    Propose { command: MetaCommand },
    /// The log index the command was applied at, or why it was not.
    ProposeReply { result: Result<u64, String> },
    /// Voter <-> learner change, signed by an officer with national jurisdiction; reply
    /// ChangeRoleReply.
    ChangeRole(Signed<RoleChange>),
    /// The log index of the configuration change, or why it was refused.
    ChangeRoleReply { result: Result<u64, String> },
    /// Ask a node how it sees the mesh; reply StatusReply.
    StatusRequest,
    /// A node's view of the mesh.
    StatusReply(MeshStatus),
    /// The request could not be served; says why.
    Error { message: String },
    /// Like StatusRequest, but answered only once the node has applied everything the leader
    /// had committed when the question arrived (Raft read-index): a fresh view.
    FreshStatusRequest,
    /// A client's signed query to its entry node; reply QueryAnswer or Error.
    ClientQuery(Box<SignedRequest>),
    /// A parent's sub-query to a child: the client's signed request (every node verifies it
    /// itself), the metadata index the entry node checked it at, and when the parent stops
    /// waiting (unix ms). Reply SubQueryAnswer or Error.
    SubQuery(Box<SubQuery>),
    /// A node's merged partial aggregate of its subtree, with coverage.
    SubQueryAnswer(Box<SubAnswer>),
    /// The released answer of a federated query.
    QueryAnswer(Box<FederatedAnswer>),
    /// A piece of a file for an online import, from one of the node's operators; reply
    /// ImportChunkAck or Error.
    ImportChunk(Box<ImportChunk>),
    /// The bytes of the file the node holds so far.
    ImportChunkAck { received: u64 },
    /// Import the files of an upload (every chunk acknowledged); reply ImportAnswer or Error.
    ImportCommit(ImportCommit),
    /// What an online import stored and rejected, with its reports.
    ImportAnswer(Box<ImportAnswer>),
    /// The recorded grants (those touching `region` when given), as the node has applied them;
    /// reply GrantList.
    GrantListRequest { region: Option<RegionCode> },
    /// Recorded grants with their revocations, at most `GRANT_LIST_MAX`.
    GrantList(Box<GrantList>),
    /// The node's newest signed audit head, with a consistency proof from the tree of
    /// `known_size` records (a head the asker saw before); reply AuditHead or Error.
    AuditHeadRequest { known_size: Option<u64> },
    /// A signed audit head and the proof asked for.
    AuditHead(Box<AuditHeadReply>),
}

/// The answer to `AuditHeadRequest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHeadReply {
    /// The key that signs the node's audit heads.
    pub audit_key: PublicKey,
    /// `None` while the log is empty.
    pub head: Option<tiermesh_crypto::audit::TreeHead>,
    pub signature: Vec<u8>,
    /// RFC 9162 consistency proof from `known_size` to `head.size` (empty when not asked).
    pub proof: Vec<[u8; 32]>,
}

/// The most grants one `GrantList` carries.
pub const GRANT_LIST_MAX: usize = 1000;

/// The answer to `GrantListRequest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantList {
    /// The metadata index the list reflects.
    pub metadata_index: u64,
    pub grants: Vec<GrantListing>,
    /// More grants matched than `GRANT_LIST_MAX`.
    pub truncated: bool,
}

/// One recorded grant and the revocations of links of its chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantListing {
    pub grant: crate::grant::Grant,
    pub revoked: Vec<([u8; 16], crate::meta::RevocationRecord)>,
}

/// The most files in one online import.
pub const IMPORT_FILES_MAX: u32 = 256;
/// The most bytes of file in one `ImportChunk` (the message stays well below
/// `MESSAGE_BYTES_MAX`).
pub const IMPORT_CHUNK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The most bytes of rejects and warnings reports an `ImportAnswer` carries; larger reports stay
/// on the node and the answer says where.
pub const IMPORT_REPORT_BYTES_MAX: usize = 12 * 1024 * 1024;

/// One piece of one file of an online import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportChunk {
    /// Chosen at random by the client: names the upload.
    pub upload: [u8; 16],
    /// The file's place in the upload, from 0.
    pub file: u32,
    /// The file's name on the client, for the reports (no folders).
    pub name: String,
    /// Where `bytes` start in the file: exactly the bytes acknowledged so far.
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// Imports the uploaded files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCommit {
    pub upload: [u8; 16],
    /// Files the client sent; the node refuses if it holds another number.
    pub files: u32,
    /// Validate and report only.
    pub dry_run: bool,
    /// Reference date of the age-based screens; the node's today when `None`.
    pub as_of: Option<crate::date::Date>,
}

/// The outcome of an online import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportAnswer {
    pub files: Vec<ImportFileAnswer>,
    pub dry_run: bool,
    /// The node's data version after the import.
    pub data_version: u64,
    /// The summary line, as `tiermesh import` prints it.
    pub summary: String,
    /// Where the node kept reports too large to send, if it did.
    pub reports_kept_at: Option<String>,
}

/// One file of an online import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportFileAnswer {
    pub name: String,
    /// The table its header named.
    pub table: Option<crate::schema::Table>,
    pub rows: u64,
    pub stored: u64,
    pub rejected: u64,
    pub warnings: u64,
    /// The rejects report (CSV), when there is one and it fits.
    pub rejects: Option<Vec<u8>>,
    /// The warnings report (CSV), when there is one and it fits.
    pub warnings_report: Option<Vec<u8>>,
}

/// A sub-query sent down the tier tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubQuery {
    pub request: SignedRequest,
    pub metadata_index: u64,
    pub hop_deadline_ms: u64,
}

/// What the entry node releases: the answer after disclosure control, and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FederatedAnswer {
    pub result: QueryResult,
    pub coverage: Coverage,
    /// The metadata index the grant was checked at.
    pub metadata_index: u64,
    /// Cells suppressed because their group was below the grant's k, and to protect those.
    pub suppressed_primary: u64,
    pub suppressed_secondary: u64,
}

/// One node's view of the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// The node that answered.
    pub responder: PublicKey,
    /// The Raft id of the leader it knows of.
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub nodes: Vec<NodeStatus>,
}

impl MeshStatus {
    /// The role of the node `key`, if it is registered.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        self.nodes
            .iter()
            .find(|node| node.key == *key)
            .map(|node| node.role)
    }

    /// The node the responder knows as the Raft leader, if it is registered.
    pub fn leader_node(&self) -> Option<&NodeStatus> {
        let leader = self.leader?;
        self.nodes.iter().find(|node| node.raft_id == leader)
    }

    /// What the node `key` is: "leader", "voter", "learner", "pending" or "unregistered".
    pub fn role_label(&self, key: &PublicKey) -> &'static str {
        match self.nodes.iter().find(|node| node.key == *key) {
            Some(node) if self.leader == Some(node.raft_id) => "leader",
            Some(node) => node.role.as_str(),
            None => "unregistered",
        }
    }
}

/// One registered node, as the responder sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub key: PublicKey,
    pub raft_id: u64,
    pub name: String,
    pub region: RegionCode,
    pub tier: Tier,
    pub addr: String,
    pub role: Role,
    /// The leader's view of the node's log (its match index); `None` unless the responder leads.
    pub matched: Option<u64>,
    /// Whether the responder can currently reach the node; `None` if it has not tried.
    pub reachable: Option<bool>,
}

/// A node's place in the Raft configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Voter,
    Learner,
    /// Registered, not yet in the Raft configuration.
    Pending,
}

impl Role {
    /// "voter", "learner" or "pending".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::Pending => "pending",
        }
    }
}

/// Why bytes are not a message, or a message cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the version header.
    #[error("a message is at least {HEADER_BYTES} bytes (the version), got {bytes}")]
    Short { bytes: usize },
    /// The version header names a version this build does not speak.
    #[error("wire version {found} is not supported; this node speaks version {expected}")]
    Version { found: u16, expected: u16 },
    /// The message is larger than `MESSAGE_BYTES_MAX` (received, or about to be sent).
    #[error("a message is at most {max} bytes, got {bytes}")]
    TooLarge { bytes: usize, max: usize },
    /// The body does not decode as a message.
    #[error("message body does not decode: {reason}")]
    Decode { reason: String },
    /// A message could not be encoded (a programmer error: plain data always encodes).
    #[error("message does not encode: {reason}")]
    Encode { reason: String },
    /// The body decodes but bytes are left after it.
    #[error("{count} bytes follow the end of the message")]
    TrailingBytes { count: usize },
}

/// A bincode error as a reason a reader can act on.
pub(crate) fn describe(error: &bincode::Error) -> String {
    match error.as_ref() {
        bincode::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the bytes end before the value does (truncated, or a length prefix larger than the \
             input)"
                .to_string()
        }
        bincode::ErrorKind::SizeLimit => "a length prefix exceeds the byte limit".to_string(),
        other => other.to_string(),
    }
}

/// The bincode options of the wire, with the byte limit that bounds every allocation.
fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit((MESSAGE_BYTES_MAX - HEADER_BYTES) as u64)
        // Trailing bytes are detected (and counted) in `decode`.
        .allow_trailing_bytes()
}

/// Encodes a message. A message over `MESSAGE_BYTES_MAX` is refused with `TooLarge`: callers
/// bound what they put in a message (e.g. the size of Raft batches) so this never happens.
pub fn encode(message: &Message) -> Result<Vec<u8>, WireError> {
    let body_bytes = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .serialized_size(message)
        .map_err(|error| WireError::Encode {
            reason: error.to_string(),
        })?;
    let bytes = usize::try_from(body_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(HEADER_BYTES);
    if bytes > MESSAGE_BYTES_MAX {
        return Err(WireError::TooLarge {
            bytes,
            max: MESSAGE_BYTES_MAX,
        });
    }
    let mut out = Vec::with_capacity(bytes);
    out.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    options()
        .serialize_into(&mut out, message)
        .map_err(|error| WireError::Encode {
            reason: error.to_string(),
        })?;
    Ok(out)
}

/// Decodes a message, refusing short input, another version, oversized input, bodies that do not
/// decode, and trailing bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(WireError::TooLarge {
            bytes: bytes.len(),
            max: MESSAGE_BYTES_MAX,
        });
    }
    let Some((version, body)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
        return Err(WireError::Short { bytes: bytes.len() });
    };
    let found = u16::from_be_bytes(*version);
    if found != WIRE_VERSION {
        return Err(WireError::Version {
            found,
            expected: WIRE_VERSION,
        });
    }
    let message: Message = options()
        .deserialize(body)
        .map_err(|error| WireError::Decode {
            reason: describe(&error),
        })?;
    // Fixed-width bincode is canonical (bools, tags and UTF-8 are checked on the way in), so the
    // decoded message re-encodes to exactly the bytes it was read from.
    let consumed = options()
        .serialized_size(&message)
        .map_err(|error| WireError::Decode {
            reason: describe(&error),
        })?;
    let consumed = usize::try_from(consumed).unwrap_or(usize::MAX);
    if consumed < body.len() {
        return Err(WireError::TrailingBytes {
            count: body.len() - consumed,
        });
    }
    Ok(message)
}
