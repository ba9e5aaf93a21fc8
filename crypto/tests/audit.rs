//! The audit Merkle tree against known answers, hand-built trees and exhaustive small sizes.

use tiermesh_crypto::audit::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root, sign_head, verify_consistency,
    verify_head, verify_inclusion, Frontier, TreeHead, DOMAIN_TREE_HEAD, PROOF_HASHES_MAX,
    TREE_HEAD_SIGNING_BYTES,
};
use tiermesh_crypto::{domain_message, CryptoError, PublicKey, SigningKey};

/// The one seed behind every bit flipped below; a failure message names it.
const SEED: u64 = 0x5eed_a0d1_7000_0001;
/// The largest tree whose every consistency and inclusion proof is checked.
const PROOF_TREE_LEAVES_MAX: usize = 70;
/// The size of the log forked in every way tested.
const FORK_TREE_LEAVES: usize = 24;
/// The largest tree the frontier is compared on.
const FRONTIER_LEAVES_MAX: usize = 300;

/// SplitMix64: enough randomness to pick bits, with no crate behind it.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// `hash` with one bit flipped.
    fn flip(&mut self, hash: &[u8; 32]) -> [u8; 32] {
        let bit = (self.next() % 256) as usize;
        let mut flipped = *hash;
        flipped[bit / 8] ^= 1 << (bit % 8);
        flipped
    }
}

fn hex(hash: &[u8; 32]) -> String {
    tiermesh_crypto::hex::encode(hash)
}

/// The leaf hashes of a log whose entry `i` is `i` as eight big-endian bytes.
fn leaves(count: usize) -> Vec<[u8; 32]> {
    (0..count as u64)
        .map(|entry| leaf_hash(&entry.to_be_bytes()))
        .collect()
}

#[test]
fn empty_tree_and_empty_leaf_match_known_answers() {
    let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_eq!(hex(&root(&[])), empty);
    assert_eq!(hex(&Frontier::default().root()), empty);
    assert_eq!(Frontier::default().size(), 0);
    assert_eq!(
        hex(&leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
}

#[test]
fn roots_match_the_rfc_6962_reference_vectors() {
    // The eight leaves and the roots of each prefix used by the certificate-transparency
    // reference test suites.
    let entries: [&[u8]; 8] = [
        b"",
        &[0x00],
        &[0x10],
        &[0x20, 0x21],
        &[0x30, 0x31],
        &[0x40, 0x41, 0x42, 0x43],
        &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
        &[
            0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
            0x6e, 0x6f,
        ],
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let hashes: Vec<[u8; 32]> = entries.iter().map(|entry| leaf_hash(entry)).collect();
    for (size, expected) in (1..=8).zip(roots) {
        assert_eq!(hex(&root(&hashes[..size])), expected, "size {size}");
    }
}

#[test]
fn small_trees_match_hand_built_hashes() {
    let hashes = leaves(7);
    let [h0, h1, h2, h3, h4, h5, h6] = [0, 1, 2, 3, 4, 5, 6].map(|index| hashes[index]);
    assert_eq!(h0, {
        let mut input = vec![0x00];
        input.extend_from_slice(&0u64.to_be_bytes());
        tiermesh_crypto::sha256(&input)
    });
    assert_eq!(node_hash(&h0, &h1), {
        let mut input = vec![0x01];
        input.extend_from_slice(&h0);
        input.extend_from_slice(&h1);
        tiermesh_crypto::sha256(&input)
    });
    let h01 = node_hash(&h0, &h1);
    let h23 = node_hash(&h2, &h3);
    let h45 = node_hash(&h4, &h5);
    let h0123 = node_hash(&h01, &h23);
    let cases: [(usize, [u8; 32]); 7] = [
        (1, h0),
        (2, h01),
        (3, node_hash(&h01, &h2)),
        (4, h0123),
        (5, node_hash(&h0123, &h4)),
        (6, node_hash(&h0123, &h45)),
        (7, node_hash(&h0123, &node_hash(&h45, &h6))),
    ];
    for (size, expected) in cases {
        assert_eq!(root(&hashes[..size]), expected, "size {size}");
    }
}

#[test]
fn frontier_equals_root_at_every_size() {
    let hashes = leaves(FRONTIER_LEAVES_MAX);
    let mut frontier = Frontier::default();
    for size in 0..=FRONTIER_LEAVES_MAX {
        assert_eq!(frontier.size(), size as u64);
        assert_eq!(frontier.root(), root(&hashes[..size]), "size {size}");
        if let Some(next) = hashes.get(size) {
            frontier.push(*next);
        }
    }
}

#[test]
fn every_consistency_proof_verifies_and_no_tampered_one_does() {
    let mut random = Random(SEED);
    // One leaf more than the largest tree, so a new size can grow by one.
    let hashes = leaves(PROOF_TREE_LEAVES_MAX + 1);
    let roots: Vec<[u8; 32]> = (0..=hashes.len())
        .map(|size| root(&hashes[..size]))
        .collect();
    // proofs[new][old], each made once: making them dominates the test's time.
    let proofs: Vec<Vec<Vec<[u8; 32]>>> = (0..=hashes.len())
        .map(|new| {
            (0..=new)
                .map(|old| {
                    consistency_proof(&hashes[..new], old as u64).expect("old within the tree")
                })
                .collect()
        })
        .collect();
    for new in 0..=PROOF_TREE_LEAVES_MAX {
        for old in 0..=new {
            let context = format!("old {old}, new {new}, seed {SEED:#x}");
            let proof = &proofs[new][old];
            let verify = |old_size: usize,
                          new_size: usize,
                          old_root: &[u8; 32],
                          new_root: &[u8; 32],
                          proof: &[[u8; 32]]| {
                verify_consistency(old_size as u64, new_size as u64, old_root, new_root, proof)
            };
            assert_eq!(
                verify(old, new, &roots[old], &roots[new], proof),
                Ok(()),
                "{context}"
            );
            assert_eq!(proof.is_empty(), old == 0 || old == new, "{context}");
            assert!(proof.len() <= PROOF_HASHES_MAX, "{context}");

            for position in 0..proof.len() {
                let mut tampered = proof.to_vec();
                tampered[position] = random.flip(&proof[position]);
                assert!(
                    verify(old, new, &roots[old], &roots[new], &tampered).is_err(),
                    "{context}, hash {position} flipped"
                );
            }
            assert!(
                verify(old, new, &random.flip(&roots[old]), &roots[new], proof).is_err(),
                "{context}, old root flipped"
            );
            // The empty tree is a prefix of every tree, so only then may the new root change.
            if old > 0 {
                assert!(
                    verify(old, new, &roots[old], &random.flip(&roots[new]), proof).is_err(),
                    "{context}, new root flipped"
                );
            }
            if old != new {
                assert!(
                    verify(new, old, &roots[new], &roots[old], proof).is_err(),
                    "{context}, sizes and roots swapped"
                );
                assert!(
                    verify(new, old, &roots[old], &roots[new], proof).is_err(),
                    "{context}, sizes swapped"
                );
            }
            if let Some(extra) = proof.first() {
                let mut longer = proof.to_vec();
                longer.push(*extra);
                assert!(
                    verify(old, new, &roots[old], &roots[new], &longer).is_err(),
                    "{context}, a hash appended"
                );
                assert!(
                    verify(old, new, &roots[old], &roots[new], &proof[1..]).is_err(),
                    "{context}, the first hash dropped"
                );
            }

            // A size moves with its root: the proof binds roots, and a size is bound to its root
            // by the signed tree head, so the claim checked is "log at (size, genuine root)".
            let changed = [
                (old.checked_sub(1), Some(new)),
                (Some(old + 1), Some(new)),
                (Some(old), new.checked_sub(1)),
                (Some(old), Some(new + 1)),
            ];
            for (other_old, other_new) in changed {
                let (Some(other_old), Some(other_new)) = (other_old, other_new) else {
                    continue;
                };
                let outcome = verify(
                    other_old,
                    other_new,
                    &roots[other_old],
                    &roots[other_new],
                    proof,
                );
                let same_proof = other_old <= other_new && proofs[other_new][other_old] == *proof;
                assert_eq!(
                    outcome.is_ok(),
                    same_proof,
                    "{context}, sizes changed to {other_old} and {other_new}"
                );
                if other_old > 0 && other_old < other_new {
                    assert!(outcome.is_err(), "{context}, {other_old} and {other_new}");
                }
            }
            // Keeping the roots, a tree twice as large is a level taller, which the proof's
            // length cannot match. (A size within the same height may pass: only the signed
            // head ties a size to its root.)
            if old > 0 && old < new {
                assert!(
                    verify(old, 2 * new, &roots[old], &roots[new], proof).is_err(),
                    "{context}, new size doubled"
                );
                assert!(
                    verify(old, new / 2, &roots[old], &roots[new], proof).is_err(),
                    "{context}, new size halved"
                );
            }
        }
    }
}

#[test]
fn consistency_refuses_bad_requests_and_long_proofs() {
    let hashes = leaves(5);
    assert_eq!(
        consistency_proof(&hashes, 6),
        Err(CryptoError::OldSize {
            old_size: 6,
            size: 5
        })
    );
    let long = vec![[0u8; 32]; PROOF_HASHES_MAX + 1];
    assert_eq!(
        verify_consistency(3, 5, &root(&hashes[..3]), &root(&hashes), &long),
        Err(CryptoError::ProofLength {
            length: PROOF_HASHES_MAX + 1,
            max: PROOF_HASHES_MAX
        })
    );
    // The empty tree has exactly one root.
    assert_eq!(
        verify_consistency(0, 5, &[0; 32], &root(&hashes), &[]),
        Err(CryptoError::Consistency {
            old_size: 0,
            new_size: 5
        })
    );
    assert_eq!(
        verify_consistency(0, 5, &root(&[]), &root(&hashes), &[hashes[0]]),
        Err(CryptoError::Consistency {
            old_size: 0,
            new_size: 5
        })
    );
    assert_eq!(
        verify_consistency(0, 0, &root(&[]), &root(&[]), &[]),
        Ok(())
    );
    // Sizes near the top of u64 must not overflow anything.
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &[1; 32], &[2; 32], &[[3; 32]]).is_err());
    assert!(verify_consistency(1, u64::MAX, &[1; 32], &[2; 32], &[[3; 32]; 64]).is_err());
}

#[test]
fn a_forked_history_is_not_consistent_with_the_original() {
    let original = leaves(FORK_TREE_LEAVES);
    for forked_leaf in [0, 1, 7, 8, 15, 16, 17, FORK_TREE_LEAVES - 1] {
        let mut fork = original.clone();
        fork[forked_leaf] = leaf_hash(b"a different entry");
        let size = original.len();
        assert!(
            verify_consistency(
                size as u64,
                size as u64,
                &root(&original),
                &root(&fork),
                &[]
            )
            .is_err(),
            "leaf {forked_leaf} forked, same size"
        );
        // Every old head that covers the forked leaf must fail against every later fork head.
        for old in forked_leaf + 1..=size {
            for new in old..=size {
                let context = format!("leaf {forked_leaf} forked, old {old}, new {new}");
                let old_root = root(&original[..old]);
                let fork_root = root(&fork[..new]);
                for prover in [&original, &fork] {
                    let proof =
                        consistency_proof(&prover[..new], old as u64).expect("old within new");
                    assert!(
                        verify_consistency(old as u64, new as u64, &old_root, &fork_root, &proof)
                            .is_err(),
                        "{context}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_inclusion_proof_verifies_and_no_tampered_one_does() {
    let mut random = Random(SEED ^ 1);
    let hashes = leaves(PROOF_TREE_LEAVES_MAX);
    for size in 0..=PROOF_TREE_LEAVES_MAX {
        let tree = &hashes[..size];
        let tree_root = root(tree);
        assert_eq!(
            inclusion_proof(tree, size as u64),
            Err(CryptoError::LeafIndex {
                index: size as u64,
                size: size as u64
            })
        );
        for index in 0..size {
            let context = format!("index {index}, size {size}, seed {SEED:#x}");
            let proof = inclusion_proof(tree, index as u64).expect("index within the tree");
            let verify = |index: u64, leaf: &[u8; 32], tree_root: &[u8; 32], proof: &[[u8; 32]]| {
                verify_inclusion(index, size as u64, leaf, tree_root, proof)
            };
            let leaf = &tree[index];
            assert_eq!(
                verify(index as u64, leaf, &tree_root, &proof),
                Ok(()),
                "{context}"
            );
            assert!(
                verify(index as u64, &random.flip(leaf), &tree_root, &proof).is_err(),
                "{context}, leaf flipped"
            );
            assert!(
                verify(index as u64, &random.flip(&tree_root), &tree_root, &proof).is_err()
                    && verify(index as u64, leaf, &random.flip(&tree_root), &proof).is_err(),
                "{context}, leaf or root flipped"
            );
            for position in 0..proof.len() {
                let mut tampered = proof.clone();
                tampered[position] = random.flip(&proof[position]);
                assert!(
                    verify(index as u64, leaf, &tree_root, &tampered).is_err(),
                    "{context}, hash {position} flipped"
                );
            }
            for other in 0..=size as u64 {
                if other != index as u64 {
                    assert!(
                        verify(other, leaf, &tree_root, &proof).is_err(),
                        "{context}, claimed at index {other}"
                    );
                }
            }
            for other in tree.iter().filter(|other| *other != leaf) {
                assert!(
                    verify(index as u64, other, &tree_root, &proof).is_err(),
                    "{context}, another leaf"
                );
            }
        }
    }
    let long = vec![[0u8; 32]; PROOF_HASHES_MAX + 1];
    assert_eq!(
        verify_inclusion(0, 2, &hashes[0], &root(&hashes[..2]), &long),
        Err(CryptoError::ProofLength {
            length: PROOF_HASHES_MAX + 1,
            max: PROOF_HASHES_MAX
        })
    );
    assert!(verify_inclusion(u64::MAX, u64::MAX, &[1; 32], &[2; 32], &[[3; 32]; 64]).is_err());
    assert!(verify_inclusion(u64::MAX - 1, u64::MAX, &[1; 32], &[2; 32], &[[3; 32]; 64]).is_err());
}

#[test]
fn a_signed_head_verifies_and_any_change_breaks_it() {
    let key = SigningKey::from_seed(&[3; 32]).expect("seeded key");
    let other_key = SigningKey::from_seed(&[4; 32]).expect("seeded key");
    let head = TreeHead {
        node: PublicKey([9; 32]),
        size: 42,
        root: root(&leaves(42)),
        time_ms: 1_700_000_000_000,
    };
    let bytes = head.signing_bytes();
    assert_eq!(bytes.len(), TREE_HEAD_SIGNING_BYTES);
    assert_eq!(&bytes[..32], &[9; 32]);
    assert_eq!(&bytes[32..40], &42u64.to_be_bytes());
    assert_eq!(&bytes[40..72], &head.root);
    assert_eq!(&bytes[72..], &1_700_000_000_000u64.to_be_bytes());

    let signature = sign_head(&key, &head);
    assert_eq!(verify_head(&key.public_key(), &head, &signature), Ok(()));
    assert_eq!(
        key.public_key()
            .verify(&domain_message(DOMAIN_TREE_HEAD, &bytes), &signature),
        Ok(())
    );
    assert_eq!(
        verify_head(&other_key.public_key(), &head, &signature),
        Err(CryptoError::Signature)
    );
    assert_eq!(
        key.public_key()
            .verify_domain("node-registration", &bytes, &signature),
        Err(CryptoError::Signature)
    );

    let mut changed = Vec::new();
    for byte in 0..32 {
        let mut node = head.clone();
        node.node.0[byte] ^= 0x80;
        changed.push(node);
        let mut root_changed = head.clone();
        root_changed.root[byte] ^= 1;
        changed.push(root_changed);
    }
    for bit in 0..64 {
        let mut size = head.clone();
        size.size ^= 1 << bit;
        changed.push(size);
        let mut time = head.clone();
        time.time_ms ^= 1 << bit;
        changed.push(time);
    }
    for changed_head in &changed {
        assert_eq!(
            verify_head(&key.public_key(), changed_head, &signature),
            Err(CryptoError::Signature),
            "{changed_head:?}"
        );
    }
    for bit in 0..signature.len() * 8 {
        let mut tampered = signature.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            verify_head(&key.public_key(), &head, &tampered),
            Err(CryptoError::Signature),
            "signature bit {bit}"
        );
    }
    assert_eq!(
        verify_head(&key.public_key(), &head, &signature[..63]),
        Err(CryptoError::Signature)
    );
}
