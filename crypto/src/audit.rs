//! The node audit log as an RFC 9162 (Certificate Transparency v2) Merkle tree: hashes, roots,
//! an incremental frontier, consistency and inclusion proofs, and signed tree heads.
//!
//! Invariant: pure functions over 32-byte hashes; the log's entries and their storage live
//! elsewhere. Boundary: every proof, root, size and signature handed to a `verify_*` function is
//! untrusted, so those functions bound their work and never panic.

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::{sha256, sign_domain, CryptoError, PublicKey, SigningKey};

/// The most hashes a proof may carry: an inclusion proof in any tree of `u64` leaves, or a
/// consistency proof in any tree below 2^63 leaves, needs no more.
pub const PROOF_HASHES_MAX: usize = 64;

/// The signature domain of a tree head (see [`crate::domain_message`]).
pub const DOMAIN_TREE_HEAD: &str = "audit/tree-head";

/// The length of [`TreeHead::signing_bytes`]: node key, size, root, time.
pub const TREE_HEAD_SIGNING_BYTES: usize = 32 + 8 + 32 + 8;

/// The byte that starts the hash input of a leaf (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// The byte that starts the hash input of an interior node.
const NODE_PREFIX: u8 = 0x01;

/// The hash of one log entry: SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[LEAF_PREFIX]);
    context.update(leaf);
    finish(context)
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[NODE_PREFIX]);
    context.update(left);
    context.update(right);
    finish(context)
}

fn finish(context: digest::Context) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The Merkle Tree Hash (RFC 9162 §2.1.1) of the leaves whose hashes are `leaf_hashes`; the
/// empty tree hashes to SHA-256 of the empty string.
pub fn root(leaf_hashes: &[[u8; 32]]) -> [u8; 32] {
    match leaf_hashes {
        [] => sha256(&[]),
        [only] => *only,
        _ => {
            let (left, right) = leaf_hashes.split_at(split(leaf_hashes.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// The largest power of two smaller than `size`, where a tree of `size` leaves splits.
fn split(size: usize) -> usize {
    assert!(
        size > 1,
        "only a tree of two or more leaves splits, not {size}"
    );
    1 << (usize::BITS - 1 - (size - 1).leading_zeros())
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first, which is
/// all an append-only log needs to compute its root after each append in O(log n) memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One root per set bit of `size`, the highest bit first.
    subtrees: Vec<[u8; 32]>,
}

impl Frontier {
    /// Appends the leaf whose hash is `leaf_hash`.
    pub fn push(&mut self, leaf_hash: [u8; 32]) {
        assert!(
            self.size < u64::MAX,
            "an audit log holds fewer than 2^64 leaves"
        );
        let mut hash = leaf_hash;
        // Each trailing one bit of the old size is a perfect subtree of the new leaf's height:
        // merge into it, as a binary increment carries.
        let mut carries = self.size;
        while carries & 1 == 1 {
            let left = self
                .subtrees
                .pop()
                .expect("a frontier holds one subtree per set bit of its size");
            hash = node_hash(&left, &hash);
            carries >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    /// The number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of every leaf pushed, equal to [`root`] over them.
    pub fn root(&self) -> [u8; 32] {
        let mut subtrees = self.subtrees.iter().rev();
        match subtrees.next() {
            None => sha256(&[]),
            Some(smallest) => subtrees.fold(*smallest, |right, left| node_hash(left, &right)),
        }
    }
}

/// The proof (RFC 9162 §2.1.4.1) that the tree of the first `old_size` leaves is a prefix of the
/// tree of all of `leaf_hashes`; empty when `old_size` is 0 or the whole tree.
pub fn consistency_proof(
    leaf_hashes: &[[u8; 32]],
    old_size: u64,
) -> Result<Vec<[u8; 32]>, CryptoError> {
    let size = leaf_hashes.len() as u64;
    if old_size > size {
        return Err(CryptoError::OldSize { old_size, size });
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < size {
        subproof(old_size as usize, leaf_hashes, true, &mut proof);
    }
    Ok(proof)
}

/// SUBPROOF(old_size, leaves, old_is_whole) of RFC 9162, appended to `proof` deepest first.
fn subproof(
    old_size: usize,
    leaf_hashes: &[[u8; 32]],
    old_is_whole: bool,
    proof: &mut Vec<[u8; 32]>,
) {
    if old_size == leaf_hashes.len() {
        // The verifier knows the old root only for the whole old tree; any other complete
        // subtree of it must be spelt out.
        if !old_is_whole {
            proof.push(root(leaf_hashes));
        }
        return;
    }
    let (left, right) = leaf_hashes.split_at(split(leaf_hashes.len()));
    if old_size <= left.len() {
        subproof(old_size, left, old_is_whole, proof);
        proof.push(root(right));
    } else {
        subproof(old_size - left.len(), right, false, proof);
        proof.push(root(left));
    }
}

/// Checks (RFC 9162 §2.1.4.2) that the tree of `old_size` leaves with root `old_root` is a prefix
/// of the tree of `new_size` leaves with root `new_root`.
///
/// Equal sizes need equal roots and an empty proof; the empty tree (whose root must be SHA-256 of
/// the empty string) is a prefix of every tree, with an empty proof. The proof binds the roots,
/// not the sizes: those must come from signed tree heads.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &[u8; 32],
    new_root: &[u8; 32],
    proof: &[[u8; 32]],
) -> Result<(), CryptoError> {
    check_proof_length(proof)?;
    let refused = Err(CryptoError::Consistency { old_size, new_size });
    if old_size > new_size {
        return refused;
    }
    if old_size == new_size {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            refused
        };
    }
    if old_size == 0 {
        return if proof.is_empty() && *old_root == sha256(&[]) {
            Ok(())
        } else {
            refused
        };
    }
    if proof.is_empty() {
        return refused;
    }
    // An old tree of a power-of-two size is a complete subtree of the new one, so the proof
    // leaves out the hash the verifier already has.
    let prepended = old_size.is_power_of_two().then_some(old_root);
    let mut path = prepended.into_iter().chain(proof);
    let Some(seed) = path.next() else {
        return refused;
    };
    // The old tree's last leaf and the new tree's last leaf, as node indices at the level
    // being hashed; they meet at the root.
    let mut node = old_size - 1;
    let mut last = new_size - 1;
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    let mut old_hash = *seed;
    let mut new_hash = *seed;
    for sibling in path {
        if last == 0 {
            return refused;
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(sibling, &old_hash);
            new_hash = node_hash(sibling, &new_hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last == 0 && old_hash == *old_root && new_hash == *new_root {
        Ok(())
    } else {
        refused
    }
}

/// The audit path (RFC 9162 §2.1.3.1) of leaf `index` in the tree of all of `leaf_hashes`.
pub fn inclusion_proof(leaf_hashes: &[[u8; 32]], index: u64) -> Result<Vec<[u8; 32]>, CryptoError> {
    let size = leaf_hashes.len() as u64;
    if index >= size {
        return Err(CryptoError::LeafIndex { index, size });
    }
    let mut proof = Vec::new();
    path(index as usize, leaf_hashes, &mut proof);
    Ok(proof)
}

/// PATH(index, leaves) of RFC 9162, appended to `proof` deepest first.
fn path(index: usize, leaf_hashes: &[[u8; 32]], proof: &mut Vec<[u8; 32]>) {
    if leaf_hashes.len() <= 1 {
        return;
    }
    let (left, right) = leaf_hashes.split_at(split(leaf_hashes.len()));
    if index < left.len() {
        path(index, left, proof);
        proof.push(root(right));
    } else {
        path(index - left.len(), right, proof);
        proof.push(root(left));
    }
}

/// Checks (RFC 9162 §2.1.3.2) that `leaf_hash` is leaf `index` of the tree of `size` leaves
/// with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf_hash: &[u8; 32],
    root: &[u8; 32],
    proof: &[[u8; 32]],
) -> Result<(), CryptoError> {
    check_proof_length(proof)?;
    let refused = Err(CryptoError::Inclusion { index, size });
    if index >= size {
        return refused;
    }
    // The leaf and the tree's last leaf, as node indices at the level being hashed.
    let mut node = index;
    let mut last = size - 1;
    let mut hash = *leaf_hash;
    for sibling in proof {
        if last == 0 {
            return refused;
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last == 0 && hash == *root {
        Ok(())
    } else {
        refused
    }
}

fn check_proof_length(proof: &[[u8; 32]]) -> Result<(), CryptoError> {
    if proof.len() > PROOF_HASHES_MAX {
        return Err(CryptoError::ProofLength {
            length: proof.len(),
            max: PROOF_HASHES_MAX,
        });
    }
    Ok(())
}

/// A node's statement that its audit log had `size` leaves with root `root` at `time_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHead {
    /// The node whose log this is.
    pub node: PublicKey,
    /// The number of leaves.
    pub size: u64,
    /// The Merkle Tree Hash of those leaves.
    pub root: [u8; 32],
    /// When the head was made, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

impl TreeHead {
    /// The bytes signed: node key, size as u64 big-endian, root, time_ms as u64 big-endian.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(TREE_HEAD_SIGNING_BYTES);
        bytes.extend_from_slice(&self.node.0);
        bytes.extend_from_slice(&self.size.to_be_bytes());
        bytes.extend_from_slice(&self.root);
        bytes.extend_from_slice(&self.time_ms.to_be_bytes());
        bytes
    }
}

/// Signs `head` under [`DOMAIN_TREE_HEAD`].
pub fn sign_head(key: &SigningKey, head: &TreeHead) -> Vec<u8> {
    sign_domain(key, DOMAIN_TREE_HEAD, &head.signing_bytes())
}

/// Verifies a [`sign_head`] signature over `head` by `audit_key`.
pub fn verify_head(
    audit_key: &PublicKey,
    head: &TreeHead,
    signature: &[u8],
) -> Result<(), CryptoError> {
    audit_key.verify_domain(DOMAIN_TREE_HEAD, &head.signing_bytes(), signature)
}
