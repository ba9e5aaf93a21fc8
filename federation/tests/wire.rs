//! The wire codec through its public behaviour: every message round-trips, the byte layout is
//! pinned, every refusal says why, hostile length prefixes are refused without allocating, no
//! input panics, and the fuzz corpus replays.

use std::path::PathBuf;

use expect_test::expect;
use proptest::prelude::*;
use tiermesh_crypto::audit::TreeHead;
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::date::Date;
use tiermesh_federation::meta::{
    sign_appointment, sign_registration, sign_role_change, MetaCommand, NodeRegistration,
    OfficerAppointment, RoleChange,
};
use tiermesh_federation::region::{RegionCode, Tier};
use tiermesh_federation::schema::Table;
use tiermesh_federation::wire::{
    decode, encode, AuditHeadReply, GrantList, ImportAnswer, ImportChunk, ImportCommit,
    ImportFileAnswer, MeshStatus, Message, NodeStatus, Role, WireError, MESSAGE_BYTES_MAX,
    WIRE_VERSION,
};

fn key(byte: u8) -> SigningKey {
    SigningKey::from_seed(&[byte; 32]).expect("seeded key")
}

fn region(text: &str) -> RegionCode {
    text.parse().expect("region")
}

fn registration(node: &SigningKey, prefix: &str) -> NodeRegistration {
    NodeRegistration {
        key: node.public_key(),
        name: format!("node {prefix}"),
        region: region(&format!("{prefix:0<12}")),
        addr: "node.example:7000".to_string(),
    }
}

fn node_status(node: &SigningKey, prefix: &str, role: Role) -> NodeStatus {
    let code = region(&format!("{prefix:0<12}"));
    NodeStatus {
        key: node.public_key(),
        raft_id: tiermesh_federation::meta::raft_id_of(&node.public_key()),
        name: format!("node {prefix}"),
        region: code,
        tier: code.tier(),
        addr: "node.example:7000".to_string(),
        role,
        matched: (role != Role::Pending).then_some(41),
        reachable: (role != Role::Pending).then_some(role == Role::Voter),
    }
}

/// One message of every variant (and every command), by name.
fn samples() -> Vec<(&'static str, Message)> {
    let (root, national, province) = (key(1), key(2), key(3));
    vec![
        (
            "raft",
            Message::Raft {
                bytes: vec![8, 1, 16, 2, 24, 3],
            },
        ),
        ("raft-empty", Message::Raft { bytes: Vec::new() }),
        (
            "propose-bootstrap",
            Message::Propose {
                command: MetaCommand::Bootstrap {
                    node: registration(&national, ""),
                    root_officer: root.public_key(),
                },
            },
        ),
        (
            "propose-register",
            Message::Propose {
                command: MetaCommand::RegisterNode(sign_registration(
                    &root,
                    registration(&province, "52"),
                )),
            },
        ),
        (
            "propose-appoint",
            Message::Propose {
                command: MetaCommand::AppointOfficer(sign_appointment(
                    &root,
                    OfficerAppointment {
                        key: province.public_key(),
                        jurisdiction: region("520000000000"),
                    },
                )),
            },
        ),
        ("propose-reply-ok", Message::ProposeReply { result: Ok(7) }),
        (
            "propose-reply-err",
            Message::ProposeReply {
                result: Err("not the leader; the leader is raft id 3".to_string()),
            },
        ),
        (
            "change-role",
            Message::ChangeRole(sign_role_change(
                &root,
                RoleChange {
                    node: province.public_key(),
                    voter: true,
                    nonce: 99,
                },
            )),
        ),
        (
            "change-role-reply-ok",
            Message::ChangeRoleReply { result: Ok(12) },
        ),
        (
            "change-role-reply-err",
            Message::ChangeRoleReply {
                result: Err("officer has jurisdiction 520000000000".to_string()),
            },
        ),
        ("status-request", Message::StatusRequest),
        (
            "status-reply",
            Message::StatusReply(MeshStatus {
                responder: national.public_key(),
                leader: Some(3),
                term: 2,
                commit: 41,
                applied: 40,
                nodes: vec![
                    node_status(&national, "", Role::Voter),
                    node_status(&province, "52", Role::Learner),
                    node_status(&root, "5201", Role::Pending),
                ],
            }),
        ),
        (
            "status-reply-empty",
            Message::StatusReply(MeshStatus {
                responder: national.public_key(),
                leader: None,
                term: 0,
                commit: 0,
                applied: 0,
                nodes: Vec::new(),
            }),
        ),
        (
            "error",
            Message::Error {
                message: "未知节点".to_string(),
            },
        ),
        (
            "import-chunk",
            Message::ImportChunk(Box::new(ImportChunk {
                upload: [7; 16],
                file: 1,
                name: "persons.csv".to_string(),
                offset: 4096,
                bytes: b"person_id,household_id\r\n".to_vec(),
            })),
        ),
        (
            "import-chunk-ack",
            Message::ImportChunkAck { received: 4096 },
        ),
        (
            "import-commit",
            Message::ImportCommit(ImportCommit {
                upload: [7; 16],
                files: 2,
                dry_run: true,
                as_of: Some(Date::parse_iso("2026-06-30").expect("date")),
            }),
        ),
        (
            "import-answer",
            Message::ImportAnswer(Box::new(ImportAnswer {
                files: vec![ImportFileAnswer {
                    name: "households.csv".to_string(),
                    table: Some(Table::Households),
                    rows: 301,
                    stored: 300,
                    rejected: 1,
                    warnings: 0,
                    rejects: Some(b"error_line,error_column\n".to_vec()),
                    warnings_report: None,
                }],
                dry_run: false,
                data_version: 42,
                summary: "1 files, 301 rows: 300 stored, 1 rejected".to_string(),
                reports_kept_at: None,
            })),
        ),
        (
            "grant-list-request",
            Message::GrantListRequest {
                region: Some(region("520000000000")),
            },
        ),
        (
            "audit-head-request",
            Message::AuditHeadRequest {
                known_size: Some(41),
            },
        ),
        (
            "audit-head",
            Message::AuditHead(Box::new(AuditHeadReply {
                audit_key: root.public_key(),
                head: Some(TreeHead {
                    node: national.public_key(),
                    size: 42,
                    root: [9; 32],
                    time_ms: 1_800_000_000_000,
                }),
                signature: vec![1; 64],
                proof: vec![[3; 32], [4; 32]],
            })),
        ),
        (
            "grant-list-empty",
            Message::GrantList(Box::new(GrantList {
                metadata_index: 12,
                grants: Vec::new(),
                truncated: false,
            })),
        ),
    ]
}

fn encoded(message: &Message) -> Vec<u8> {
    encode(message).expect("a small message encodes")
}

fn hex(bytes: &[u8]) -> String {
    tiermesh_crypto::hex::encode(bytes)
}

#[test]
fn every_message_round_trips() {
    for (name, message) in samples() {
        let bytes = encoded(&message);
        assert_eq!(&bytes[..2], &WIRE_VERSION.to_be_bytes(), "{name}");
        assert_eq!(decode(&bytes), Ok(message), "{name}");
    }
}

#[test]
fn the_byte_layout_is_pinned() {
    let cases = [
        (Message::StatusRequest, expect!["000105000000"]),
        (
            Message::ProposeReply { result: Ok(7) },
            expect!["000102000000000000000700000000000000"],
        ),
        (
            Message::Raft { bytes: vec![0xaa] },
            expect!["0001000000000100000000000000aa"],
        ),
        (
            Message::Error {
                message: "é".to_string(),
            },
            expect!["0001070000000200000000000000c3a9"],
        ),
    ];
    for (message, expected) in cases {
        expected.assert_eq(&hex(&encoded(&message)));
    }
}

/// Field and variant order is wire format: a reordering shows here before it reaches a peer.
#[test]
fn the_status_layout_is_pinned() {
    let status = MeshStatus {
        responder: PublicKey([0x11; 32]),
        leader: Some(2),
        term: 3,
        commit: 4,
        applied: 5,
        nodes: vec![NodeStatus {
            key: PublicKey([0x22; 32]),
            raft_id: 6,
            name: "n".to_string(),
            region: region("520102000000"),
            tier: Tier::County,
            addr: "a:1".to_string(),
            role: Role::Learner,
            matched: None,
            reachable: Some(true),
        }],
    };
    let text = hex(&encoded(&Message::StatusReply(status)));
    let fields: Vec<String> = [
        (0, 2),
        (2, 6),
        (6, 38),
        (38, 47),
        (47, 55),
        (55, 63),
        (63, 71),
        (71, 79),
        (79, 111),
        (111, 119),
        (119, 128),
        (128, 136),
        (136, 140),
        (140, 151),
        (151, 155),
        (155, 156),
        (156, 158),
    ]
    .iter()
    .map(|(start, end)| text[start * 2..end * 2].to_string())
    .collect();
    expect![[r#"
        0001
        06000000
        1111111111111111111111111111111111111111111111111111111111111111
        010200000000000000
        0300000000000000
        0400000000000000
        0500000000000000
        0100000000000000
        2222222222222222222222222222222222222222222222222222222222222222
        0600000000000000
        01000000000000006e
        80b57e1879000000
        03000000
        0300000000000000613a31
        01000000
        00
        0101"#]]
    .assert_eq(&fields.join("\n"));
}

fn with_header(body: &[u8]) -> Vec<u8> {
    let mut bytes = WIRE_VERSION.to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// `Message::Raft` (variant 0) whose byte vector claims `length` elements.
fn raft_claiming(length: u64) -> Vec<u8> {
    let mut body = 0u32.to_le_bytes().to_vec();
    body.extend_from_slice(&length.to_le_bytes());
    body.extend_from_slice(&[1, 2, 3]);
    with_header(&body)
}

#[test]
fn damaged_bytes_are_refused_with_the_reason() {
    let valid = encoded(&samples()[3].1);
    let mut trailing = valid.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    let mut bad_option = encoded(&Message::StatusReply(MeshStatus {
        responder: PublicKey([1; 32]),
        leader: None,
        term: 0,
        commit: 0,
        applied: 0,
        nodes: Vec::new(),
    }));
    bad_option[2 + 4 + 32] = 2;
    let mut bad_utf8 = with_header(&7u32.to_le_bytes());
    bad_utf8.extend_from_slice(&2u64.to_le_bytes());
    bad_utf8.extend_from_slice(&[0xc3, 0x28]);
    let cases = [
        (Vec::new(), expect!["a message is at least 2 bytes (the version), got 0"]),
        (vec![0], expect!["a message is at least 2 bytes (the version), got 1"]),
        (
            vec![0, 2, 5, 0, 0, 0],
            expect!["wire version 2 is not supported; this node speaks version 1"],
        ),
        (
            vec![0xff, 0xff],
            expect!["wire version 65535 is not supported; this node speaks version 1"],
        ),
        (vec![0, 1], expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"]),
        (
            with_header(&99u32.to_le_bytes()),
            expect!["message body does not decode: invalid value: integer `99`, expected variant index 0 <= i < 21"],
        ),
        (
            valid[..valid.len() - 1].to_vec(),
            expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"],
        ),
        (trailing, expect!["3 bytes follow the end of the message"]),
        (
            bad_option,
            expect!["message body does not decode: tag for enum is not valid, found 2"],
        ),
        (
            bad_utf8,
            expect!["message body does not decode: string is not valid utf8: invalid utf-8 sequence of 1 bytes from index 0"],
        ),
        (
            vec![0; MESSAGE_BYTES_MAX + 1],
            expect!["a message is at most 16777216 bytes, got 16777217"],
        ),
    ];
    for (bytes, expected) in cases {
        let error = decode(&bytes).expect_err("damaged bytes");
        expected.assert_eq(&error.to_string());
    }
    assert_eq!(
        decode(&[0, 1, 5, 0, 0, 0, 9]),
        Err(WireError::TrailingBytes { count: 1 })
    );
}

#[test]
fn oversized_messages_are_not_encoded() {
    // The Raft variant costs 2 (version) + 4 (variant) + 8 (length) bytes around its payload.
    let largest = MESSAGE_BYTES_MAX - 14;
    let fits = Message::Raft {
        bytes: vec![7; largest],
    };
    let bytes = encoded(&fits);
    assert_eq!(bytes.len(), MESSAGE_BYTES_MAX);
    assert_eq!(decode(&bytes), Ok(fits));
    let over = Message::Raft {
        bytes: vec![7; largest + 1],
    };
    assert_eq!(
        encode(&over),
        Err(WireError::TooLarge {
            bytes: MESSAGE_BYTES_MAX + 1,
            max: MESSAGE_BYTES_MAX
        })
    );
}

/// A length prefix of 2^60 (or just under the limit) with a few bytes behind it is refused; had
/// the decoder trusted it, the allocation would abort the test process.
#[test]
fn hostile_length_prefixes_are_refused_without_allocating() {
    let mut hostile_string = with_header(&7u32.to_le_bytes());
    hostile_string.extend_from_slice(&(1u64 << 60).to_le_bytes());
    hostile_string.extend_from_slice(b"abc");
    let mut hostile_nodes = with_header(&6u32.to_le_bytes());
    hostile_nodes.extend_from_slice(&[1; 32]);
    hostile_nodes.extend_from_slice(&[0; 1 + 8 + 8 + 8]);
    hostile_nodes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let cases = [
        (
            raft_claiming(1 << 60),
            expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"],
        ),
        (
            raft_claiming(u64::MAX),
            expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"],
        ),
        (
            raft_claiming((MESSAGE_BYTES_MAX - 20) as u64),
            expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"],
        ),
        (
            hostile_string,
            expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"],
        ),
        (
            hostile_nodes,
            expect!["message body does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"],
        ),
    ];
    for (bytes, expected) in cases {
        let error = decode(&bytes).expect_err("hostile length");
        expected.assert_eq(&error.to_string());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_never_panic_and_decode_canonically(
        variant in 0u32..9,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = with_header(&variant.to_le_bytes());
        bytes.extend_from_slice(&body);
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(encoded(&message), bytes);
        }
    }

    #[test]
    fn damaged_valid_messages_never_panic_and_decode_canonically(
        sample in 0usize..14,
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encoded(&samples()[sample].1);
        let at = position.index(bytes.len());
        bytes[at] = byte;
        let keep = cut.index(bytes.len() + 1).max(at + 1);
        bytes.truncate(keep);
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(encoded(&message), bytes);
        }
    }
}

// ---- the fuzz corpus ---------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wire_decode")
}

/// The seed inputs of `fuzz/corpus/wire_decode`, by file name.
fn corpus_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = samples()
        .into_iter()
        .map(|(name, message)| (name.to_string(), encoded(&message)))
        .collect();
    let register = encoded(&samples()[3].1);
    let status = encoded(&samples()[11].1);
    let mut other_version = encoded(&Message::StatusRequest);
    other_version[1] = 2;
    let mut trailing = encoded(&Message::StatusRequest);
    trailing.push(0);
    seeds.extend([
        (
            "truncated-register".to_string(),
            register[..register.len() / 2].to_vec(),
        ),
        (
            "truncated-status".to_string(),
            status[..status.len() - 1].to_vec(),
        ),
        ("truncated-header".to_string(), vec![0]),
        ("header-only".to_string(), vec![0, 1]),
        ("other-version".to_string(), other_version),
        ("trailing-byte".to_string(), trailing),
        (
            "unknown-variant".to_string(),
            with_header(&8u32.to_le_bytes()),
        ),
        ("hostile-length".to_string(), raft_claiming(1 << 60)),
    ]);
    seeds
}

/// The committed seeds match what this build writes (run with UPDATE_EXPECT=1 to rewrite them);
/// every file in the folder, seeds and fuzzer finds alike, decodes without panicking.
#[test]
fn fuzz_corpus_is_current_and_replays() {
    let dir = corpus_dir();
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    for (name, bytes) in corpus_seeds() {
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).expect("create corpus dir");
            std::fs::write(&path, &bytes).expect("write seed");
        }
        let stored = std::fs::read(&path).unwrap_or_default();
        assert!(
            stored == bytes,
            "{} is missing or stale; if the wire format changed on purpose, bump WIRE_VERSION and \
             run `UPDATE_EXPECT=1 cargo test -p tiermesh-federation --test wire`",
            path.display()
        );
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        let _ = decode(&bytes);
        files += 1;
    }
    assert!(files > 0, "{} is empty", dir.display());
}
