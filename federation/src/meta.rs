//! The metadata state machine: the node registry, the tier tree and the security officers, rebuilt
//! on every node by applying the same committed Raft entries in the same order.
//!
//! Invariant: `apply` is a pure function of the state, the log index and the command; no clock,
//! no randomness, no iteration over a hash map. Two nodes that apply the same entries hold equal
//! states, byte for byte in their snapshots.
//! Boundary: commands arrive from the network (through Raft) and snapshots from a peer or from
//! disk; both are checked here, never trusted.

use std::collections::BTreeMap;

use bincode::Options;
use serde::{Deserialize, Serialize};
use tiermesh_crypto::{sha256, sign_domain, PublicKey, SigningKey};

use crate::region::{RegionCode, Tier};
use crate::schema::STANDARD_VERSION;

/// The longest node name, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// The longest node address (`host:port`), in bytes.
pub const ADDR_BYTES_MAX: usize = 255;
/// The largest snapshot `from_snapshot` will decode, in bytes.
pub const SNAPSHOT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The format version written in the first two bytes (big-endian) of every snapshot.
pub const SNAPSHOT_VERSION: u16 = 1;

/// Signature domain of a [`NodeRegistration`].
pub const DOMAIN_NODE_REGISTRATION: &str = "meta/node-registration";
/// Signature domain of an [`OfficerAppointment`].
pub const DOMAIN_OFFICER_APPOINTMENT: &str = "meta/officer-appointment";
/// Signature domain of a [`RoleChange`].
pub const DOMAIN_ROLE_CHANGE: &str = "meta/role-change";
/// Domain of a grant revocation's signature.
pub const DOMAIN_REVOCATION: &str = "meta/revocation";
/// The longest reason a revocation may carry, in bytes.
pub const REVOCATION_REASON_BYTES_MAX: usize = 1024;

/// The Raft id of the node with this key: the first 8 bytes of SHA-256 of the key, big-endian,
/// with 0 (raft-rs's "no node") mapped to 1.
pub fn raft_id_of(key: &PublicKey) -> u64 {
    let digest = sha256(&key.0);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(first) {
        0 => 1,
        id => id,
    }
}

/// The canonical bytes of a value: bincode, fixed-width little-endian integers. Signatures are
/// made and checked over these bytes.
pub fn canonical_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .serialize(value)
        .expect("plain data always serialises into a Vec")
}

/// A node asks to join the mesh (or to change its name or address).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// The node's TLS identity.
    pub key: PublicKey,
    /// A human name, 1 to [`NAME_CHARS_MAX`] characters.
    pub name: String,
    /// The region whose records the node keeps; never a village.
    pub region: RegionCode,
    /// Where peers reach it: `host:port`, at most [`ADDR_BYTES_MAX`] bytes.
    pub addr: String,
}

/// An officer appoints another officer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficerAppointment {
    /// The new officer's key.
    pub key: PublicKey,
    /// Where the new officer may act; inside the appointing officer's jurisdiction.
    pub jurisdiction: RegionCode,
}

/// Move a registered node between Raft voter and learner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// The node to move.
    pub node: PublicKey,
    /// True for voter, false for learner.
    pub voter: bool,
    /// Chosen by the officer so that two requests with the same effect differ; the node that
    /// executes a request refuses a nonce it has already seen from that officer.
    pub nonce: u64,
}

/// Withdraws a grant link, and with it every link delegated from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The link's id (a link of some recorded grant's chain).
    pub grant_id: [u8; 16],
    /// Why, for the record.
    pub reason: String,
    /// When the signer asked (unix seconds), for the record.
    pub at: u64,
}

/// What the metadata keeps of a revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    pub by: PublicKey,
    pub reason: String,
    pub at: u64,
    /// The log index it was applied at: a query pinned at or past it sees it.
    pub index: u64,
}

/// A body that is signed under its own domain.
pub trait SignedBody: Serialize {
    /// The domain passed to `sign_domain`.
    const DOMAIN: &'static str;
}

impl SignedBody for NodeRegistration {
    const DOMAIN: &'static str = DOMAIN_NODE_REGISTRATION;
}

impl SignedBody for OfficerAppointment {
    const DOMAIN: &'static str = DOMAIN_OFFICER_APPOINTMENT;
}

impl SignedBody for RoleChange {
    const DOMAIN: &'static str = DOMAIN_ROLE_CHANGE;
}

impl SignedBody for Revocation {
    const DOMAIN: &'static str = DOMAIN_REVOCATION;
}

/// Signs a revocation.
pub fn sign_revocation(signer: &SigningKey, body: Revocation) -> Signed<Revocation> {
    Signed::sign(signer, body)
}

/// A body with the signer's key and its domain-separated signature over the canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// What was signed.
    pub body: T,
    /// Who signed it.
    pub signer: PublicKey,
    /// `sign_domain(signer, T::DOMAIN, canonical_bytes(body))`.
    pub signature: Vec<u8>,
}

impl<T: SignedBody> Signed<T> {
    /// Signs `body` with `key`.
    pub fn sign(key: &SigningKey, body: T) -> Signed<T> {
        let signature = sign_domain(key, T::DOMAIN, &canonical_bytes(&body));
        Signed {
            body,
            signer: key.public_key(),
            signature,
        }
    }

    /// Checks the signature against `signer` (not whether the signer may sign it).
    pub fn verify(&self) -> Result<(), MetaError> {
        self.signer
            .verify_domain(T::DOMAIN, &canonical_bytes(&self.body), &self.signature)
            .map_err(|_| MetaError::BadSignature {
                signer: self.signer,
                domain: T::DOMAIN,
            })
    }
}

/// Signs a node registration.
pub fn sign_registration(officer: &SigningKey, body: NodeRegistration) -> Signed<NodeRegistration> {
    Signed::sign(officer, body)
}

/// Signs an officer appointment.
pub fn sign_appointment(
    officer: &SigningKey,
    body: OfficerAppointment,
) -> Signed<OfficerAppointment> {
    Signed::sign(officer, body)
}

/// Signs a voter/learner change.
pub fn sign_role_change(officer: &SigningKey, body: RoleChange) -> Signed<RoleChange> {
    Signed::sign(officer, body)
}

/// One metadata command, the payload of a normal Raft entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// The first entry of a mesh, written by `tiermesh mesh create` on the national node: that
    /// node and the root officer (jurisdiction national).
    Bootstrap {
        node: NodeRegistration,
        root_officer: PublicKey,
    },
    /// A node joins (or changes its name/address), signed by an officer whose jurisdiction
    /// contains the node's region.
    RegisterNode(Signed<NodeRegistration>),
    /// An officer appoints another officer with a jurisdiction inside its own.
    AppointOfficer(Signed<OfficerAppointment>),
    /// A grant becomes known to the mesh (grants are not secret): its audience may then connect
    /// to nodes, and officers can list who may see what. The chain must verify (root an
    /// officer covering the scope, every link narrower), judged at the latest `not_before` of
    /// its links so that every node reaches the same verdict.
    RecordGrant(Box<crate::grant::Grant>),
    /// A grant link is withdrawn, with every link delegated from it. Signed by the link's issuer
    /// or by an officer whose jurisdiction contains every region of the link's scope; the link
    /// must belong to a recorded grant.
    RevokeGrant(Signed<Revocation>),
}

impl MetaCommand {
    /// The command's name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            MetaCommand::Bootstrap { .. } => "Bootstrap",
            MetaCommand::RegisterNode(_) => "RegisterNode",
            MetaCommand::AppointOfficer(_) => "AppointOfficer",
            MetaCommand::RecordGrant(_) => "RecordGrant",
            MetaCommand::RevokeGrant(_) => "RevokeGrant",
        }
    }
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub key: PublicKey,
    /// `raft_id_of(key)`.
    pub raft_id: u64,
    pub name: String,
    pub region: RegionCode,
    pub addr: String,
    /// The officer who signed the registration in force (the root officer for the first node).
    pub registered_by: PublicKey,
    /// The log index that last changed this record.
    pub index: u64,
}

impl NodeRecord {
    /// The tier the node serves.
    pub fn tier(&self) -> Tier {
        self.region.tier()
    }
}

/// An appointed security officer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfficerRecord {
    pub key: PublicKey,
    pub jurisdiction: RegionCode,
    /// `None` for the root officer named at bootstrap.
    pub appointed_by: Option<PublicKey>,
    /// The log index that appointed it.
    pub index: u64,
}

/// What applying a committed entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The mesh now has its first node and its root officer.
    Bootstrapped,
    /// A node was added (`updated: false`) or its name/address replaced (`updated: true`).
    NodeRegistered { key: PublicKey, updated: bool },
    /// A new officer.
    OfficerAppointed { key: PublicKey },
    /// A grant was recorded, under its leaf link's id.
    GrantRecorded { id: [u8; 16] },
    /// A grant link was revoked; `grants` recorded grants carried it in their chain.
    GrantRevoked { id: [u8; 16], grants: usize },
    /// The index was not above the applied index: the entry was applied before.
    Ignored,
}

/// Why a command was refused or a snapshot was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// A grant to record does not verify.
    #[error("the grant does not verify: {reason}")]
    Grant { reason: String },
    /// A revocation was refused.
    #[error("the revocation is refused: {reason}")]
    Revocation { reason: String },
    /// A command other than Bootstrap arrived before the mesh was bootstrapped.
    #[error("the mesh is not bootstrapped: the first command must be Bootstrap, got {command}")]
    NotBootstrapped { command: &'static str },
    /// Bootstrap arrived after the mesh was bootstrapped.
    #[error("the mesh is already bootstrapped; Bootstrap is only ever the first command")]
    AlreadyBootstrapped,
    /// The signer is not an appointed officer.
    #[error("{key} is not an appointed security officer")]
    UnknownOfficer { key: PublicKey },
    /// The signature does not verify against the named signer.
    #[error("the signature of {signer} over the {domain} body does not verify")]
    BadSignature {
        signer: PublicKey,
        domain: &'static str,
    },
    /// The region (of a node or of a new officer) is outside the signing officer's jurisdiction.
    #[error("region {region} is outside the jurisdiction {jurisdiction} of officer {officer}")]
    OutsideJurisdiction {
        officer: PublicKey,
        region: RegionCode,
        jurisdiction: RegionCode,
    },
    /// Nodes run at township tier or above, never at a village.
    #[error("region {region} is a village; a node serves a township or a higher tier")]
    VillageRegion { region: RegionCode },
    /// Two keys would share one Raft id.
    #[error(
        "node {key} would have raft id {raft_id}, already used by node {other}; use another key"
    )]
    RaftIdCollision {
        key: PublicKey,
        other: PublicKey,
        raft_id: u64,
    },
    /// A registered node asked to move to another region.
    #[error(
        "node {key} is registered in region {registered}; moving it to {requested} is refused \
         (register a new key for the new region)"
    )]
    RegionChange {
        key: PublicKey,
        registered: RegionCode,
        requested: RegionCode,
    },
    /// Another key already serves the region.
    #[error("region {region} is already served by node {holder}; a region has one node")]
    RegionTaken {
        region: RegionCode,
        holder: PublicKey,
    },
    /// The appointee is already an officer.
    #[error("{key} is already an officer, with jurisdiction {jurisdiction}")]
    OfficerExists {
        key: PublicKey,
        jurisdiction: RegionCode,
    },
    /// The key is not a registered node.
    #[error("{key} is not a registered node")]
    UnknownNode { key: PublicKey },
    /// Raft roles are changed only by an officer of national jurisdiction.
    #[error(
        "officer {officer} has jurisdiction {jurisdiction}; changing a raft role needs national \
         jurisdiction 000000000000"
    )]
    NotNationalOfficer {
        officer: PublicKey,
        jurisdiction: RegionCode,
    },
    /// The node name is empty or too long.
    #[error("a node name is 1 to {max} characters, got {chars}")]
    NameLength { chars: usize, max: usize },
    /// The node name holds a control character.
    #[error("a node name holds no control characters, got {name:?}")]
    NameCharacter { name: String },
    /// The node address is too long.
    #[error("a node address is at most {max} bytes, got {bytes}")]
    AddrTooLong { bytes: usize, max: usize },
    /// The node address is not `host:port`.
    #[error("a node address is host:port with a port from 1 to 65535 and no spaces, got {addr:?}")]
    AddrShape { addr: String },
    /// The snapshot is larger than `SNAPSHOT_BYTES_MAX`.
    #[error("a metadata snapshot is at most {max} bytes, got {bytes}")]
    SnapshotTooLarge { bytes: usize, max: usize },
    /// The snapshot's format version is not this build's.
    #[error("metadata snapshot format {found} is not the supported format {expected}")]
    SnapshotVersion { found: u16, expected: u16 },
    /// The snapshot bytes do not decode.
    #[error("metadata snapshot does not decode: {reason}")]
    SnapshotDecode { reason: String },
    /// The snapshot decodes but breaks an invariant of the state.
    #[error("metadata snapshot is inconsistent: {reason}")]
    SnapshotInconsistent { reason: String },
}

/// The replicated metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    nodes: BTreeMap<PublicKey, NodeRecord>,
    officers: BTreeMap<PublicKey, OfficerRecord>,
    standard_version: u32,
    applied_index: u64,
    bootstrapped: bool,
    /// Recorded grants: leaf link id -> encoded grant.
    grants: BTreeMap<[u8; 16], Vec<u8>>,
    /// Revoked link ids.
    revoked: BTreeMap<[u8; 16], RevocationRecord>,
}

impl MetaState {
    /// An empty, not yet bootstrapped state.
    pub fn new() -> MetaState {
        MetaState::default()
    }

    /// Applies a committed entry at `index` (indexes strictly increasing; an index <=
    /// applied_index is ignored and reported as such). A refused command leaves the state
    /// unchanged except applied_index, and returns the reason.
    pub fn apply(&mut self, index: u64, command: &MetaCommand) -> Result<Applied, MetaError> {
        if index <= self.applied_index {
            return Ok(Applied::Ignored);
        }
        self.applied_index = index;
        match command {
            MetaCommand::Bootstrap { node, root_officer } => {
                self.apply_bootstrap(index, node, *root_officer)
            }
            MetaCommand::RegisterNode(signed) => self.apply_registration(index, signed),
            MetaCommand::AppointOfficer(signed) => self.apply_appointment(index, signed),
            MetaCommand::RecordGrant(grant) => self.apply_record_grant(grant),
            MetaCommand::RevokeGrant(signed) => self.apply_revocation(index, signed),
        }
    }

    fn apply_revocation(
        &mut self,
        index: u64,
        signed: &Signed<Revocation>,
    ) -> Result<Applied, MetaError> {
        self.require_bootstrapped("RevokeGrant")?;
        signed.verify()?;
        let body = &signed.body;
        let id = body.grant_id;
        if body.reason.len() > REVOCATION_REASON_BYTES_MAX {
            return Err(MetaError::Revocation {
                reason: format!(
                    "the reason is {} bytes; at most {REVOCATION_REASON_BYTES_MAX}",
                    body.reason.len()
                ),
            });
        }
        if let Some(record) = self.revoked.get(&id) {
            return Err(MetaError::Revocation {
                reason: format!(
                    "grant id {} was revoked already, at index {}",
                    crate::grant::id_hex(&id),
                    record.index
                ),
            });
        }
        let grants = self.grants();
        let Some(link) = grants
            .iter()
            .flat_map(|grant| grant.links.iter())
            .map(|signed| &signed.link)
            .find(|link| link.id == id)
        else {
            return Err(MetaError::Revocation {
                reason: format!(
                    "grant id {} is not in any recorded grant",
                    crate::grant::id_hex(&id)
                ),
            });
        };
        let covering_officer = self.officers.get(&signed.signer).is_some_and(|officer| {
            link.scope
                .iter()
                .all(|region| officer.jurisdiction.contains(*region))
        });
        if link.issuer != signed.signer && !covering_officer {
            return Err(MetaError::Revocation {
                reason: format!(
                    "{} neither issued grant id {} nor is an officer whose jurisdiction covers its scope",
                    signed.signer,
                    crate::grant::id_hex(&id)
                ),
            });
        }
        let carrying = grants
            .iter()
            .filter(|grant| grant.ids().contains(&id))
            .count();
        self.revoked.insert(
            id,
            RevocationRecord {
                by: signed.signer,
                reason: body.reason.clone(),
                at: body.at,
                index,
            },
        );
        Ok(Applied::GrantRevoked {
            id,
            grants: carrying,
        })
    }

    /// True when the link `id` has been revoked.
    pub fn is_revoked(&self, id: &[u8; 16]) -> bool {
        self.revoked.contains_key(id)
    }

    /// The revocation of link `id`, if any.
    pub fn revocation(&self, id: &[u8; 16]) -> Option<&RevocationRecord> {
        self.revoked.get(id)
    }

    fn apply_record_grant(&mut self, grant: &crate::grant::Grant) -> Result<Applied, MetaError> {
        if !self.bootstrapped {
            return Err(MetaError::NotBootstrapped {
                command: "RecordGrant",
            });
        }
        let judged_at = grant
            .links
            .iter()
            .map(|signed| signed.link.not_before)
            .max()
            .unwrap_or(0);
        crate::grant::verify(grant, self, judged_at, &|id| self.is_revoked(id)).map_err(
            |error| MetaError::Grant {
                reason: error.to_string(),
            },
        )?;
        let id = grant.leaf().id;
        self.grants.insert(id, grant.encode());
        Ok(Applied::GrantRecorded { id })
    }

    /// The recorded grants.
    pub fn grants(&self) -> Vec<crate::grant::Grant> {
        self.grants
            .values()
            .filter_map(|bytes| crate::grant::Grant::decode(bytes).ok())
            .collect()
    }

    /// The audiences of recorded grants: keys that may connect to ask queries. Audiences of
    /// revoked grants stay among them, so that their queries are refused with the reason
    /// ("revoked") rather than at the handshake; no node answers them.
    pub fn grant_audiences(&self) -> Vec<PublicKey> {
        self.grants()
            .iter()
            .map(|grant| grant.leaf().audience)
            .collect()
    }

    /// Records that the committed entry at `index` carried no metadata command (an empty entry
    /// or a configuration change), so `applied_index` keeps step with the log. Returns false,
    /// changing nothing, for an index that is not above `applied_index`.
    pub fn advance(&mut self, index: u64) -> bool {
        if index <= self.applied_index {
            return false;
        }
        self.applied_index = index;
        true
    }

    fn apply_bootstrap(
        &mut self,
        index: u64,
        node: &NodeRegistration,
        root_officer: PublicKey,
    ) -> Result<Applied, MetaError> {
        if self.bootstrapped {
            return Err(MetaError::AlreadyBootstrapped);
        }
        check_registration_fields(node)?;
        self.officers.insert(
            root_officer,
            OfficerRecord {
                key: root_officer,
                jurisdiction: RegionCode::NATIONAL,
                appointed_by: None,
                index,
            },
        );
        self.nodes
            .insert(node.key, node_record(node, root_officer, index));
        self.standard_version = STANDARD_VERSION;
        self.bootstrapped = true;
        Ok(Applied::Bootstrapped)
    }

    fn apply_registration(
        &mut self,
        index: u64,
        signed: &Signed<NodeRegistration>,
    ) -> Result<Applied, MetaError> {
        self.require_bootstrapped("RegisterNode")?;
        let officer = self.signing_officer(signed.signer)?;
        signed.verify()?;
        let body = &signed.body;
        check_registration_fields(body)?;
        if !officer.jurisdiction.contains(body.region) {
            return Err(MetaError::OutsideJurisdiction {
                officer: officer.key,
                region: body.region,
                jurisdiction: officer.jurisdiction,
            });
        }
        let updated = match self.nodes.get(&body.key) {
            Some(existing) if existing.region != body.region => {
                return Err(MetaError::RegionChange {
                    key: body.key,
                    registered: existing.region,
                    requested: body.region,
                });
            }
            Some(_) => true,
            None => {
                if let Some(holder) = self.node_in_region(body.region) {
                    return Err(MetaError::RegionTaken {
                        region: body.region,
                        holder: holder.key,
                    });
                }
                let raft_id = raft_id_of(&body.key);
                if let Some(other) = self.node_by_raft_id(raft_id) {
                    return Err(MetaError::RaftIdCollision {
                        key: body.key,
                        other: other.key,
                        raft_id,
                    });
                }
                false
            }
        };
        self.nodes
            .insert(body.key, node_record(body, signed.signer, index));
        Ok(Applied::NodeRegistered {
            key: body.key,
            updated,
        })
    }

    fn apply_appointment(
        &mut self,
        index: u64,
        signed: &Signed<OfficerAppointment>,
    ) -> Result<Applied, MetaError> {
        self.require_bootstrapped("AppointOfficer")?;
        let officer = self.signing_officer(signed.signer)?;
        signed.verify()?;
        let body = &signed.body;
        if !officer.jurisdiction.contains(body.jurisdiction) {
            return Err(MetaError::OutsideJurisdiction {
                officer: officer.key,
                region: body.jurisdiction,
                jurisdiction: officer.jurisdiction,
            });
        }
        if let Some(existing) = self.officers.get(&body.key) {
            return Err(MetaError::OfficerExists {
                key: body.key,
                jurisdiction: existing.jurisdiction,
            });
        }
        self.officers.insert(
            body.key,
            OfficerRecord {
                key: body.key,
                jurisdiction: body.jurisdiction,
                appointed_by: Some(signed.signer),
                index,
            },
        );
        Ok(Applied::OfficerAppointed { key: body.key })
    }

    fn require_bootstrapped(&self, command: &'static str) -> Result<(), MetaError> {
        if self.bootstrapped {
            Ok(())
        } else {
            Err(MetaError::NotBootstrapped { command })
        }
    }

    fn signing_officer(&self, signer: PublicKey) -> Result<&OfficerRecord, MetaError> {
        self.officers
            .get(&signer)
            .ok_or(MetaError::UnknownOfficer { key: signer })
    }

    /// Checks a voter/learner change before the node proposes it to Raft: the signer is an
    /// officer of national jurisdiction, the signature verifies, and the node is registered.
    /// (Refusing a replayed nonce is the executing node's job.)
    pub fn check_role_change(&self, request: &Signed<RoleChange>) -> Result<(), MetaError> {
        let officer = self.signing_officer(request.signer)?;
        if officer.jurisdiction != RegionCode::NATIONAL {
            return Err(MetaError::NotNationalOfficer {
                officer: officer.key,
                jurisdiction: officer.jurisdiction,
            });
        }
        request.verify()?;
        if !self.nodes.contains_key(&request.body.node) {
            return Err(MetaError::UnknownNode {
                key: request.body.node,
            });
        }
        Ok(())
    }

    /// The index of the last committed entry applied.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// True once the Bootstrap entry has been applied.
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// The data-standard version the mesh runs (0 before bootstrap).
    pub fn standard_version(&self) -> u32 {
        self.standard_version
    }

    /// The node with this key.
    pub fn node(&self, key: &PublicKey) -> Option<&NodeRecord> {
        self.nodes.get(key)
    }

    /// The node with this Raft id.
    pub fn node_by_raft_id(&self, id: u64) -> Option<&NodeRecord> {
        self.nodes.values().find(|node| node.raft_id == id)
    }

    /// The node serving exactly this region.
    pub fn node_in_region(&self, region: RegionCode) -> Option<&NodeRecord> {
        self.nodes.values().find(|node| node.region == region)
    }

    /// Every node, in key order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// The officer with this key.
    pub fn officer(&self, key: &PublicKey) -> Option<&OfficerRecord> {
        self.officers.get(key)
    }

    /// Every officer, in key order.
    pub fn officers(&self) -> impl Iterator<Item = &OfficerRecord> {
        self.officers.values()
    }

    /// The tier tree: a node's parent is the registered node whose region is the closest proper
    /// ancestor region of it (e.g. county 520102 -> prefecture 5201 node if registered, else
    /// province 52 node, else national). `None` for the root and for unknown keys.
    pub fn parent_of(&self, key: &PublicKey) -> Option<&NodeRecord> {
        let node = self.nodes.get(key)?;
        let by_region = self.by_region();
        closest_ancestor(&by_region, node.region)
    }

    /// The inverse of `parent_of`: the nodes whose parent is `key`, in region order.
    pub fn children_of(&self, key: &PublicKey) -> Vec<&NodeRecord> {
        let Some(node) = self.nodes.get(key) else {
            return Vec::new();
        };
        let by_region = self.by_region();
        let mut children: Vec<&NodeRecord> = self
            .nodes
            .values()
            .filter(|child| child.region != node.region && node.region.contains(child.region))
            .filter(|child| {
                closest_ancestor(&by_region, child.region).is_some_and(|parent| parent.key == *key)
            })
            .collect();
        children.sort_by_key(|child| (child.region, child.key));
        children
    }

    fn by_region(&self) -> BTreeMap<RegionCode, &NodeRecord> {
        self.nodes
            .values()
            .map(|node| (node.region, node))
            .collect()
    }

    /// Keys a TLS peer may present: registered nodes and officers.
    pub fn trusts(&self, key: &PublicKey) -> bool {
        self.nodes.contains_key(key)
            || self.officers.contains_key(key)
            || self.grant_audiences().contains(key)
    }

    /// The state as bytes: the 2-byte big-endian [`SNAPSHOT_VERSION`], then bincode (fixed-width
    /// little-endian integers).
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut bytes = SNAPSHOT_VERSION.to_be_bytes().to_vec();
        bytes.extend_from_slice(&canonical_bytes(self));
        bytes
    }

    /// Decodes and checks a snapshot. Hostile bytes give an error, never a panic, and never an
    /// allocation past [`SNAPSHOT_BYTES_MAX`].
    pub fn from_snapshot(bytes: &[u8]) -> Result<MetaState, MetaError> {
        if bytes.len() > SNAPSHOT_BYTES_MAX {
            return Err(MetaError::SnapshotTooLarge {
                bytes: bytes.len(),
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let Some((version, body)) = bytes.split_first_chunk::<2>() else {
            return Err(MetaError::SnapshotDecode {
                reason: format!("{} bytes is shorter than the 2-byte version", bytes.len()),
            });
        };
        let found = u16::from_be_bytes(*version);
        if found != SNAPSHOT_VERSION {
            return Err(MetaError::SnapshotVersion {
                found,
                expected: SNAPSHOT_VERSION,
            });
        }
        let options = bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(SNAPSHOT_BYTES_MAX as u64)
            // Trailing bytes are counted below, for a clearer message than bincode's.
            .allow_trailing_bytes();
        let decode_error = |error: bincode::Error| MetaError::SnapshotDecode {
            reason: crate::wire::describe(&error),
        };
        let state: MetaState = options.deserialize(body).map_err(decode_error)?;
        // Fixed-width bincode is canonical, so the state re-encodes to exactly the bytes read.
        let consumed = options.serialized_size(&state).map_err(decode_error)?;
        let consumed = usize::try_from(consumed).unwrap_or(usize::MAX);
        if consumed < body.len() {
            return Err(MetaError::SnapshotDecode {
                reason: format!(
                    "{} bytes follow the end of the state",
                    body.len() - consumed
                ),
            });
        }
        state.check_consistent()?;
        Ok(state)
    }

    /// The invariants `apply` keeps, checked on a state that came from outside.
    fn check_consistent(&self) -> Result<(), MetaError> {
        let inconsistent = |reason: String| Err(MetaError::SnapshotInconsistent { reason });
        if !self.bootstrapped && (!self.nodes.is_empty() || !self.officers.is_empty()) {
            return inconsistent("nodes or officers before bootstrap".to_string());
        }
        if self.bootstrapped && self.standard_version == 0 {
            return inconsistent("bootstrapped with data-standard version 0".to_string());
        }
        if let Some((id, record)) = self
            .revoked
            .iter()
            .find(|(_, record)| record.index > self.applied_index)
        {
            return inconsistent(format!(
                "grant id {} revoked at index {}, past the applied index {}",
                crate::grant::id_hex(id),
                record.index,
                self.applied_index
            ));
        }
        let mut raft_ids = BTreeMap::new();
        let mut regions = BTreeMap::new();
        for (key, node) in &self.nodes {
            if node.key != *key {
                return inconsistent(format!("node {} filed under key {key}", node.key));
            }
            if node.raft_id != raft_id_of(key) {
                return inconsistent(format!("node {key} has raft id {}", node.raft_id));
            }
            if node.index > self.applied_index {
                return inconsistent(format!(
                    "node {key} changed at index {} after the applied index {}",
                    node.index, self.applied_index
                ));
            }
            if let Err(error) = check_registration_fields(&registration_of(node)) {
                return inconsistent(format!("node {key}: {error}"));
            }
            if let Some(other) = raft_ids.insert(node.raft_id, key) {
                return inconsistent(format!("nodes {other} and {key} share a raft id"));
            }
            if let Some(other) = regions.insert(node.region, key) {
                return inconsistent(format!(
                    "nodes {other} and {key} share region {}",
                    node.region
                ));
            }
        }
        for (key, officer) in &self.officers {
            if officer.key != *key {
                return inconsistent(format!("officer {} filed under key {key}", officer.key));
            }
            if officer.index > self.applied_index {
                return inconsistent(format!(
                    "officer {key} appointed at index {} after the applied index {}",
                    officer.index, self.applied_index
                ));
            }
        }
        Ok(())
    }
}

fn node_record(body: &NodeRegistration, registered_by: PublicKey, index: u64) -> NodeRecord {
    NodeRecord {
        key: body.key,
        raft_id: raft_id_of(&body.key),
        name: body.name.clone(),
        region: body.region,
        addr: body.addr.clone(),
        registered_by,
        index,
    }
}

fn registration_of(node: &NodeRecord) -> NodeRegistration {
    NodeRegistration {
        key: node.key,
        name: node.name.clone(),
        region: node.region,
        addr: node.addr.clone(),
    }
}

/// The node of the closest proper ancestor region of `region` that has one.
fn closest_ancestor<'a>(
    by_region: &BTreeMap<RegionCode, &'a NodeRecord>,
    region: RegionCode,
) -> Option<&'a NodeRecord> {
    let mut current = region;
    while let Some(up) = current.parent() {
        if let Some(node) = by_region.get(&up) {
            return Some(node);
        }
        current = up;
    }
    None
}

/// The checks on a registration's own fields, whoever signed it.
fn check_registration_fields(body: &NodeRegistration) -> Result<(), MetaError> {
    if body.region.tier() == Tier::Village {
        return Err(MetaError::VillageRegion {
            region: body.region,
        });
    }
    let chars = body.name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        return Err(MetaError::NameLength {
            chars,
            max: NAME_CHARS_MAX,
        });
    }
    if body.name.chars().any(char::is_control) {
        return Err(MetaError::NameCharacter {
            name: body.name.clone(),
        });
    }
    check_addr(&body.addr)
}

fn check_addr(addr: &str) -> Result<(), MetaError> {
    if addr.len() > ADDR_BYTES_MAX {
        return Err(MetaError::AddrTooLong {
            bytes: addr.len(),
            max: ADDR_BYTES_MAX,
        });
    }
    let shape = || MetaError::AddrShape {
        addr: addr.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(shape)?;
    let port_ok = !port.is_empty()
        && port.bytes().all(|byte| byte.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|port| port != 0);
    let host_ok = !host.is_empty()
        && !host
            .chars()
            .any(|character| character.is_whitespace() || character.is_control());
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(shape())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_seed(&[byte; 32]).expect("seeded key")
    }

    fn registration(node: &SigningKey, region: u64) -> NodeRegistration {
        NodeRegistration {
            key: node.public_key(),
            name: "n".to_string(),
            region: RegionCode::from_u64(region).expect("region"),
            addr: "n.example:7000".to_string(),
        }
    }

    /// A real collision takes some 2^32 keys to find, so one is planted by hand.
    #[test]
    fn a_raft_id_collision_is_refused() {
        let (root, national, newcomer) = (key(1), key(2), key(3));
        let mut state = MetaState::new();
        let bootstrap = MetaCommand::Bootstrap {
            node: registration(&national, 0),
            root_officer: root.public_key(),
        };
        assert_eq!(state.apply(1, &bootstrap), Ok(Applied::Bootstrapped));
        let planted = PublicKey([9; 32]);
        let mut record = node_record(
            &registration(&key(4), 530_000_000_000),
            root.public_key(),
            1,
        );
        record.key = planted;
        record.raft_id = raft_id_of(&newcomer.public_key());
        state.nodes.insert(planted, record);
        let command = MetaCommand::RegisterNode(sign_registration(
            &root,
            registration(&newcomer, 520_000_000_000),
        ));
        assert_eq!(
            state.apply(2, &command),
            Err(MetaError::RaftIdCollision {
                key: newcomer.public_key(),
                other: planted,
                raft_id: raft_id_of(&newcomer.public_key()),
            })
        );
        assert!(!state.trusts(&newcomer.public_key()));
    }

    #[test]
    fn raft_ids_are_the_big_endian_digest_prefix_and_never_zero() {
        let public = key(5).public_key();
        let digest = sha256(&public.0);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        assert_eq!(raft_id_of(&public), u64::from_be_bytes(first));
        assert_ne!(raft_id_of(&PublicKey([0; 32])), 0);
    }
}
