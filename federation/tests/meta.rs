//! The metadata state machine through its public behaviour: bootstrap, every registration and
//! appointment rule, the tier tree, snapshots, stale indexes, and determinism under a seeded
//! random command sequence.
//!
//! Keys come from one seeded ChaCha stream, so every expected message below is stable; keys are
//! shown by name (`<p52>`) instead of 64 hex digits.

use std::path::PathBuf;

use expect_test::{expect, Expect};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tiermesh_crypto::{PublicKey, SigningKey};
use tiermesh_federation::meta::{
    raft_id_of, sign_appointment, sign_registration, sign_role_change, Applied, MetaCommand,
    MetaError, MetaState, NodeRegistration, OfficerAppointment, RoleChange, Signed,
    SNAPSHOT_BYTES_MAX,
};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::STANDARD_VERSION;

const SEED: u64 = 0x7153_0001;

/// Named deterministic keys.
struct Keys {
    random: ChaCha8Rng,
    names: Vec<(PublicKey, String)>,
}

impl Keys {
    fn new(seed: u64) -> Keys {
        Keys {
            random: ChaCha8Rng::seed_from_u64(seed),
            names: Vec::new(),
        }
    }

    fn make(&mut self, name: &str) -> SigningKey {
        let mut seed = [0u8; 32];
        self.random.fill_bytes(&mut seed);
        let key = SigningKey::from_seed(&seed).expect("any 32 bytes are an Ed25519 seed");
        self.names.push((key.public_key(), name.to_string()));
        key
    }

    /// `text` with every known key's hex replaced by `<name>`.
    fn show(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (key, name) in &self.names {
            out = out.replace(&key.to_string(), &format!("<{name}>"));
        }
        out
    }
}

/// A region from its significant prefix: "5201" -> 520100000000.
fn region(prefix: &str) -> RegionCode {
    format!("{prefix:0<12}").parse().expect("valid region")
}

fn registration(node: &SigningKey, name: &str, prefix: &str, addr: &str) -> NodeRegistration {
    NodeRegistration {
        key: node.public_key(),
        name: name.to_string(),
        region: region(prefix),
        addr: addr.to_string(),
    }
}

fn appointment(officer: &SigningKey, prefix: &str) -> OfficerAppointment {
    OfficerAppointment {
        key: officer.public_key(),
        jurisdiction: region(prefix),
    }
}

fn bootstrap(node: &SigningKey, root_officer: &SigningKey) -> MetaCommand {
    MetaCommand::Bootstrap {
        node: registration(node, "national", "", "national.example:7000"),
        root_officer: root_officer.public_key(),
    }
}

fn outcome(result: &Result<Applied, MetaError>) -> String {
    match result {
        Ok(applied) => format!("{applied:?}"),
        Err(error) => format!("refused: {error}"),
    }
}

/// Applies each command at the next index; a refused one must change nothing but the index.
fn check_sequence(state: &mut MetaState, keys: &Keys, cases: Vec<(MetaCommand, Expect)>) {
    for (command, expected) in cases {
        let index = state.applied_index() + 1;
        let before = state.clone();
        let result = state.apply(index, &command);
        expected.assert_eq(&keys.show(&outcome(&result)));
        assert_eq!(state.applied_index(), index);
        if result.is_err() {
            let mut unchanged = before;
            assert!(unchanged.advance(index));
            assert_eq!(*state, unchanged, "a refused command changed the state");
        }
    }
}

struct Mesh {
    keys: Keys,
    state: MetaState,
    root: SigningKey,
    national: SigningKey,
}

fn bootstrapped() -> Mesh {
    let mut keys = Keys::new(SEED);
    let root = keys.make("root");
    let national = keys.make("national");
    let mut state = MetaState::new();
    let result = state.apply(1, &bootstrap(&national, &root));
    assert_eq!(result, Ok(Applied::Bootstrapped));
    Mesh {
        keys,
        state,
        root,
        national,
    }
}

#[test]
fn bootstrap_names_the_first_node_and_the_root_officer() {
    let Mesh {
        keys,
        state,
        root,
        national,
    } = bootstrapped();
    assert!(state.is_bootstrapped());
    assert_eq!(state.standard_version(), STANDARD_VERSION);
    assert_eq!(state.applied_index(), 1);
    let node = state.node(&national.public_key()).expect("national node");
    assert_eq!(node.raft_id, raft_id_of(&national.public_key()));
    assert_eq!(node.registered_by, root.public_key());
    assert_eq!(state.node_by_raft_id(node.raft_id), Some(node));
    let officer = state.officer(&root.public_key()).expect("root officer");
    assert_eq!(officer.jurisdiction, RegionCode::NATIONAL);
    assert_eq!(officer.appointed_by, None);
    assert!(state.trusts(&root.public_key()));
    assert!(state.trusts(&national.public_key()));
    assert_eq!(state.nodes().count(), 1);
    assert_eq!(state.officers().count(), 1);
    expect![[r#"NodeRecord { key: PublicKey(<national>), raft_id: 12393648089118887963, name: "national", region: RegionCode(000000000000), addr: "national.example:7000", registered_by: PublicKey(<root>), index: 1 }"#]]
    .assert_eq(&keys.show(&format!("{node:?}")));
}

#[test]
fn commands_before_bootstrap_and_a_second_bootstrap_are_refused() {
    let mut keys = Keys::new(SEED);
    let root = keys.make("root");
    let national = keys.make("national");
    let province = keys.make("p52");
    let mut state = MetaState::new();
    let village_bootstrap = MetaCommand::Bootstrap {
        node: registration(&national, "village", "520102001201", "v.example:7000"),
        root_officer: root.public_key(),
    };
    check_sequence(
        &mut state,
        &keys,
        vec![
            (
                MetaCommand::RegisterNode(sign_registration(
                    &root,
                    registration(&province, "guizhou", "52", "gz.example:7000"),
                )),
                expect!["refused: the mesh is not bootstrapped: the first command must be Bootstrap, got RegisterNode"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(&root, appointment(&province, "52"))),
                expect!["refused: the mesh is not bootstrapped: the first command must be Bootstrap, got AppointOfficer"],
            ),
            (
                village_bootstrap,
                expect!["refused: region 520102001201 is a village; a node serves a township or a higher tier"],
            ),
            (bootstrap(&national, &root), expect!["Bootstrapped"]),
            (
                bootstrap(&province, &province),
                expect!["refused: the mesh is already bootstrapped; Bootstrap is only ever the first command"],
            ),
        ],
    );
    assert_eq!(state.applied_index(), 5);
    assert_eq!(state.nodes().count(), 1);
    assert!(!state.trusts(&province.public_key()));
}

#[test]
fn registrations_follow_every_rule() {
    let Mesh {
        mut keys,
        mut state,
        root,
        ..
    } = bootstrapped();
    let officer52 = keys.make("officer52");
    let stranger = keys.make("stranger");
    let node52 = keys.make("node52");
    let county = keys.make("county520102");
    let other = keys.make("other");

    let forged = Signed {
        body: registration(&other, "x", "5201", "x.example:7000"),
        signer: officer52.public_key(),
        signature: tiermesh_crypto::sign_domain(&stranger, "meta/node-registration", b"x"),
    };
    let mut altered = sign_registration(
        &officer52,
        registration(&other, "x", "5201", "x.example:7000"),
    );
    altered.body.region = region("5202");
    let by_officer52 = |node: &SigningKey, name: &str, prefix: &str, addr: &str| {
        MetaCommand::RegisterNode(sign_registration(
            &officer52,
            registration(node, name, prefix, addr),
        ))
    };
    let long_name = "县".repeat(65);
    let long_addr = format!("{}:7000", "h".repeat(251));
    check_sequence(
        &mut state,
        &keys,
        vec![
            (
                MetaCommand::AppointOfficer(sign_appointment(&root, appointment(&officer52, "52"))),
                expect!["OfficerAppointed { key: PublicKey(<officer52>) }"],
            ),
            (
                MetaCommand::RegisterNode(sign_registration(
                    &root,
                    registration(&node52, "贵州", "52", "10.0.0.52:7000"),
                )),
                expect!["NodeRegistered { key: PublicKey(<node52>), updated: false }"],
            ),
            (
                by_officer52(&county, "南明区", "520102", "10.0.5.2:7000"),
                expect!["NodeRegistered { key: PublicKey(<county520102>), updated: false }"],
            ),
            (
                by_officer52(&county, "南明", "520102", "[fd00::52]:7001"),
                expect!["NodeRegistered { key: PublicKey(<county520102>), updated: true }"],
            ),
            (
                MetaCommand::RegisterNode(sign_registration(
                    &stranger,
                    registration(&other, "x", "5201", "x.example:7000"),
                )),
                expect!["refused: <stranger> is not an appointed security officer"],
            ),
            (
                MetaCommand::RegisterNode(forged),
                expect!["refused: the signature of <officer52> over the meta/node-registration body does not verify"],
            ),
            (
                MetaCommand::RegisterNode(altered),
                expect!["refused: the signature of <officer52> over the meta/node-registration body does not verify"],
            ),
            (
                by_officer52(&other, "x", "530102", "x.example:7000"),
                expect!["refused: region 530102000000 is outside the jurisdiction 520000000000 of officer <officer52>"],
            ),
            (
                by_officer52(&other, "x", "", "x.example:7000"),
                expect!["refused: region 000000000000 is outside the jurisdiction 520000000000 of officer <officer52>"],
            ),
            (
                by_officer52(&other, "x", "520102001201", "x.example:7000"),
                expect!["refused: region 520102001201 is a village; a node serves a township or a higher tier"],
            ),
            (
                by_officer52(&county, "南明", "520103", "x.example:7000"),
                expect!["refused: node <county520102> is registered in region 520102000000; moving it to 520103000000 is refused (register a new key for the new region)"],
            ),
            (
                by_officer52(&other, "x", "520102", "x.example:7000"),
                expect!["refused: region 520102000000 is already served by node <county520102>; a region has one node"],
            ),
            (
                by_officer52(&other, "", "5201", "x.example:7000"),
                expect!["refused: a node name is 1 to 64 characters, got 0"],
            ),
            (
                by_officer52(&other, &long_name, "5201", "x.example:7000"),
                expect!["refused: a node name is 1 to 64 characters, got 65"],
            ),
            (
                by_officer52(&other, "a\nb", "5201", "x.example:7000"),
                expect![[r#"refused: a node name holds no control characters, got "a\nb""#]],
            ),
            (
                by_officer52(&other, "x", "5201", &long_addr),
                expect!["refused: a node address is at most 255 bytes, got 256"],
            ),
            (
                by_officer52(&other, "x", "5201", "x.example"),
                expect![[r#"refused: a node address is host:port with a port from 1 to 65535 and no spaces, got "x.example""#]],
            ),
            (
                by_officer52(&other, "x", "5201", "x.example:0"),
                expect![[r#"refused: a node address is host:port with a port from 1 to 65535 and no spaces, got "x.example:0""#]],
            ),
            (
                by_officer52(&other, "x", "5201", "x.example:70000"),
                expect![[r#"refused: a node address is host:port with a port from 1 to 65535 and no spaces, got "x.example:70000""#]],
            ),
            (
                by_officer52(&other, "x", "5201", "x example:7000"),
                expect![[r#"refused: a node address is host:port with a port from 1 to 65535 and no spaces, got "x example:7000""#]],
            ),
            (
                by_officer52(&other, "x", "5201", ":7000"),
                expect![[r#"refused: a node address is host:port with a port from 1 to 65535 and no spaces, got ":7000""#]],
            ),
            (
                by_officer52(&other, "贵阳", "5201", "gy.example:7000"),
                expect!["NodeRegistered { key: PublicKey(<other>), updated: false }"],
            ),
        ],
    );
    let county_record = state.node(&county.public_key()).expect("county node");
    assert_eq!(county_record.name, "南明");
    assert_eq!(county_record.addr, "[fd00::52]:7001");
    assert_eq!(county_record.index, 5);
    assert_eq!(county_record.registered_by, officer52.public_key());
    assert!(!state.trusts(&stranger.public_key()));
    assert_eq!(state.nodes().count(), 4);
}

#[test]
fn appointments_stay_inside_the_appointer_jurisdiction() {
    let Mesh {
        mut keys,
        mut state,
        root,
        ..
    } = bootstrapped();
    let officer52 = keys.make("officer52");
    let officer5201 = keys.make("officer5201");
    let officer53 = keys.make("officer53");
    let stranger = keys.make("stranger");
    let county = keys.make("county520102");
    let mut forged = sign_appointment(&officer52, appointment(&stranger, "5202"));
    forged.signature = sign_appointment(&stranger, appointment(&stranger, "5202")).signature;
    check_sequence(
        &mut state,
        &keys,
        vec![
            (
                MetaCommand::AppointOfficer(sign_appointment(&root, appointment(&officer52, "52"))),
                expect!["OfficerAppointed { key: PublicKey(<officer52>) }"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &officer52,
                    appointment(&officer5201, "5201"),
                )),
                expect!["OfficerAppointed { key: PublicKey(<officer5201>) }"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &officer52,
                    appointment(&officer53, "53"),
                )),
                expect!["refused: region 530000000000 is outside the jurisdiction 520000000000 of officer <officer52>"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &officer5201,
                    appointment(&officer53, ""),
                )),
                expect!["refused: region 000000000000 is outside the jurisdiction 520100000000 of officer <officer5201>"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &officer52,
                    appointment(&officer5201, "5202"),
                )),
                expect!["refused: <officer5201> is already an officer, with jurisdiction 520100000000"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &officer5201,
                    appointment(&officer52, "5201"),
                )),
                expect!["refused: <officer52> is already an officer, with jurisdiction 520000000000"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &stranger,
                    appointment(&stranger, "52"),
                )),
                expect!["refused: <stranger> is not an appointed security officer"],
            ),
            (
                MetaCommand::AppointOfficer(forged),
                expect!["refused: the signature of <officer52> over the meta/officer-appointment body does not verify"],
            ),
            (
                MetaCommand::RegisterNode(sign_registration(
                    &officer5201,
                    registration(&county, "南明", "520102", "nm.example:7000"),
                )),
                expect!["NodeRegistered { key: PublicKey(<county520102>), updated: false }"],
            ),
            (
                MetaCommand::AppointOfficer(sign_appointment(
                    &root,
                    appointment(&officer53, "53"),
                )),
                expect!["OfficerAppointed { key: PublicKey(<officer53>) }"],
            ),
        ],
    );
    let record = state.officer(&officer5201.public_key()).expect("officer");
    assert_eq!(record.appointed_by, Some(officer52.public_key()));
    assert_eq!(record.jurisdiction, region("5201"));
    assert_eq!(record.index, 3);
    assert!(state.trusts(&officer53.public_key()));
    assert!(!state.trusts(&stranger.public_key()));
}

#[test]
fn role_changes_need_a_national_officer_and_a_registered_node() {
    let Mesh {
        mut keys,
        mut state,
        root,
        national,
    } = bootstrapped();
    let officer52 = keys.make("officer52");
    let stranger = keys.make("stranger");
    state
        .apply(
            2,
            &MetaCommand::AppointOfficer(sign_appointment(&root, appointment(&officer52, "52"))),
        )
        .expect("appointed");
    let change = |officer: &SigningKey, node: &SigningKey| {
        sign_role_change(
            officer,
            RoleChange {
                node: node.public_key(),
                voter: true,
                nonce: 9,
            },
        )
    };
    let mut forged = change(&root, &national);
    forged.body.voter = false;
    let cases = [
        (change(&root, &national), expect!["ok"]),
        (
            change(&officer52, &national),
            expect!["officer <officer52> has jurisdiction 520000000000; changing a raft role needs national jurisdiction 000000000000"],
        ),
        (
            change(&stranger, &national),
            expect!["<stranger> is not an appointed security officer"],
        ),
        (
            change(&root, &stranger),
            expect!["<stranger> is not a registered node"],
        ),
        (
            forged,
            expect!["the signature of <root> over the meta/role-change body does not verify"],
        ),
    ];
    for (request, expected) in cases {
        let shown = match state.check_role_change(&request) {
            Ok(()) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        expected.assert_eq(&keys.show(&shown));
    }
}

/// National, two provinces, prefectures and counties; county 520302's prefecture has no node.
fn tree() -> (Keys, MetaState) {
    let Mesh {
        mut keys,
        mut state,
        root,
        ..
    } = bootstrapped();
    let nodes = [
        ("p52", "52"),
        ("p53", "53"),
        ("f5201", "5201"),
        ("f5301", "5301"),
        ("c520102", "520102"),
        ("c520302", "520302"),
        ("c530102", "530102"),
        ("t520102001", "520102001"),
    ];
    for (name, prefix) in nodes {
        let key = keys.make(name);
        let index = state.applied_index() + 1;
        let command = MetaCommand::RegisterNode(sign_registration(
            &root,
            registration(&key, name, prefix, &format!("{name}.example:7000")),
        ));
        let result = state.apply(index, &command);
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    (keys, state)
}

#[test]
fn the_tier_tree_follows_the_closest_registered_ancestor() {
    let (keys, state) = tree();
    let mut nodes: Vec<_> = state.nodes().collect();
    nodes.sort_by_key(|node| node.region);
    let mut listing = String::new();
    for node in nodes {
        let parent = state
            .parent_of(&node.key)
            .map_or("-".to_string(), |parent| parent.name.clone());
        let children: Vec<&str> = state
            .children_of(&node.key)
            .iter()
            .map(|child| child.name.as_str())
            .collect();
        listing.push_str(&format!(
            "{} {}: parent {parent}, children {children:?}\n",
            node.region, node.name
        ));
    }
    expect![[r#"
        000000000000 national: parent -, children ["p52", "p53"]
        520000000000 p52: parent national, children ["f5201", "c520302"]
        520100000000 f5201: parent p52, children ["c520102"]
        520102000000 c520102: parent f5201, children ["t520102001"]
        520102001000 t520102001: parent c520102, children []
        520302000000 c520302: parent p52, children []
        530000000000 p53: parent national, children ["f5301"]
        530100000000 f5301: parent p53, children ["c530102"]
        530102000000 c530102: parent f5301, children []
    "#]]
    .assert_eq(&listing);
    let unknown = PublicKey([7; 32]);
    assert_eq!(state.parent_of(&unknown), None);
    assert!(state.children_of(&unknown).is_empty());
    let county = keys.names.iter().find(|(_, name)| name == "c520302");
    let (county, _) = county.expect("county key");
    assert_eq!(
        state.node(county).map(|node| node.name.as_str()),
        Some("c520302")
    );
}

#[test]
fn snapshots_round_trip_and_refuse_damage() {
    let (_keys, state) = tree();
    let bytes = state.to_snapshot();
    let restored = MetaState::from_snapshot(&bytes).expect("round trip");
    assert_eq!(restored, state);
    assert_eq!(restored.to_snapshot(), bytes);
    let empty = MetaState::new();
    assert_eq!(
        MetaState::from_snapshot(&empty.to_snapshot()),
        Ok(empty.clone())
    );

    let mut trailing = bytes.clone();
    trailing.push(0);
    let mut other_version = bytes.clone();
    other_version[1] = 9;
    // The first node record's own key, right after the map length (8) and the map key (32).
    let mut misfiled = bytes.clone();
    misfiled[2 + 8 + 32] ^= 1;
    let mut hostile_length = vec![0, 1];
    hostile_length.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let oversized = vec![0u8; SNAPSHOT_BYTES_MAX + 1];
    let cases = [
        (Vec::new(), expect!["metadata snapshot does not decode: 0 bytes is shorter than the 2-byte version"]),
        (vec![0], expect!["metadata snapshot does not decode: 1 bytes is shorter than the 2-byte version"]),
        (other_version, expect!["metadata snapshot format 9 is not the supported format 1"]),
        (bytes[..bytes.len() / 2].to_vec(), expect!["metadata snapshot does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"]),
        (trailing, expect!["metadata snapshot does not decode: 1 bytes follow the end of the state"]),
        (hostile_length, expect!["metadata snapshot does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"]),
        (misfiled, expect!["metadata snapshot is inconsistent: node <?> filed under key <?>"]),
        (oversized, expect!["a metadata snapshot is at most 67108864 bytes, got 67108865"]),
    ];
    for (bytes, expected) in cases {
        let error = MetaState::from_snapshot(&bytes).expect_err("damaged snapshot");
        let shown = error.to_string();
        let shown = hex_keys_hidden(&shown);
        expected.assert_eq(&shown);
    }
}

/// Replaces every 64-hex-digit run with `<?>`.
fn hex_keys_hidden(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for character in text.chars() {
        if character.is_ascii_hexdigit() {
            run.push(character);
            continue;
        }
        out.push_str(if run.len() == 64 { "<?>" } else { &run });
        run.clear();
        out.push(character);
    }
    out.push_str(if run.len() == 64 { "<?>" } else { &run });
    out
}

#[test]
fn stale_indexes_are_ignored() {
    let Mesh {
        mut keys,
        mut state,
        root,
        ..
    } = bootstrapped();
    let officer = keys.make("officer52");
    let command = MetaCommand::AppointOfficer(sign_appointment(&root, appointment(&officer, "52")));
    assert_eq!(
        state.apply(5, &command),
        Ok(Applied::OfficerAppointed {
            key: officer.public_key()
        })
    );
    let after = state.clone();
    for index in [0, 1, 4, 5] {
        assert_eq!(
            state.apply(index, &command),
            Ok(Applied::Ignored),
            "{index}"
        );
        assert_eq!(
            state.apply(index, &bootstrap(&officer, &officer)),
            Ok(Applied::Ignored)
        );
        assert!(!state.advance(index));
    }
    assert_eq!(state, after);
    assert!(state.advance(6));
    assert_eq!(state.applied_index(), 6);
    // Re-applying the same command at a fresh index is a (refused) duplicate, not a no-op.
    assert!(state.apply(7, &command).is_err());
}

/// A random command over a fixed cast: valid, refused and forged ones mixed.
fn random_command(random: &mut ChaCha8Rng, cast: &[SigningKey]) -> MetaCommand {
    const PREFIXES: [&str; 12] = [
        "",
        "52",
        "53",
        "5201",
        "5202",
        "5301",
        "520102",
        "520103",
        "530102",
        "520102001",
        "520102001201",
        "5203",
    ];
    let pick = |random: &mut ChaCha8Rng| &cast[random.gen_range(0..cast.len())];
    let signer = pick(random);
    let subject = pick(random);
    let prefix = PREFIXES[random.gen_range(0..PREFIXES.len())];
    let mut command = match random.gen_range(0..10) {
        0..=5 => MetaCommand::RegisterNode(sign_registration(
            signer,
            registration(
                subject,
                &format!("n{}", random.gen_range(0..3)),
                prefix,
                &format!("h{}.example:{}", random.gen_range(0..3), 7000),
            ),
        )),
        6..=8 => {
            MetaCommand::AppointOfficer(sign_appointment(signer, appointment(subject, prefix)))
        }
        _ => bootstrap(subject, signer),
    };
    if random.gen_ratio(1, 10) {
        match &mut command {
            MetaCommand::RegisterNode(signed) => signed.signature[0] ^= 1,
            MetaCommand::AppointOfficer(signed) => signed.signer = pick(random).public_key(),
            MetaCommand::Bootstrap { .. }
            | MetaCommand::RecordGrant(_)
            | MetaCommand::RevokeGrant(_) => {}
        }
    }
    command
}

#[test]
fn the_same_commands_give_the_same_state() {
    for seed in 0..8u64 {
        let mut random = ChaCha8Rng::seed_from_u64(SEED ^ seed);
        let mut keys = Keys::new(seed);
        let cast: Vec<SigningKey> = (0..12).map(|n| keys.make(&format!("k{n}"))).collect();
        let mut commands = vec![bootstrap(&cast[0], &cast[1])];
        commands.extend((0..300).map(|_| random_command(&mut random, &cast)));

        let mut first = MetaState::new();
        let mut second = MetaState::new();
        let mut restored = MetaState::new();
        let mut accepted = 0;
        let mut index = 0;
        for (position, command) in commands.iter().enumerate() {
            index += random.gen_range(1..3);
            let result = first.apply(index, command);
            assert_eq!(second.apply(index, command), result, "seed {seed}");
            if position == commands.len() / 2 {
                restored = MetaState::from_snapshot(&first.to_snapshot()).expect("snapshot");
            } else if position > commands.len() / 2 {
                assert_eq!(restored.apply(index, command), result, "seed {seed}");
            }
            accepted += usize::from(result.is_ok());
            for node in first.nodes() {
                let officer = first.officer(&node.registered_by).expect("signer");
                assert!(officer.jurisdiction.contains(node.region), "seed {seed}");
            }
        }
        assert_eq!(first, second, "seed {seed}");
        assert_eq!(first, restored, "seed {seed}");
        assert_eq!(first.to_snapshot(), second.to_snapshot(), "seed {seed}");
        assert_eq!(
            MetaState::from_snapshot(&first.to_snapshot()),
            Ok(first.clone())
        );
        assert!(
            (10..commands.len() - 10).contains(&accepted),
            "seed {seed}: {accepted} of {} accepted; the mix should hold both outcomes",
            commands.len()
        );
    }
}

#[test]
fn public_keys_encode_as_32_raw_bytes() {
    let key = PublicKey([0xab; 32]);
    let node = NodeRegistration {
        key,
        name: String::new(),
        region: RegionCode::NATIONAL,
        addr: String::new(),
    };
    let bytes = tiermesh_federation::meta::canonical_bytes(&node);
    assert_eq!(&bytes[..32], &[0xab; 32]);
    assert_eq!(bytes.len(), 32 + 8 + 8 + 8);
}

// ---- the fuzz corpus ---------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/meta_snapshot")
}

/// The seed inputs of `fuzz/corpus/meta_snapshot`, by file name.
fn corpus_seeds() -> Vec<(String, Vec<u8>)> {
    let (_keys, tree) = tree();
    let full = tree.to_snapshot();
    let bootstrapped = bootstrapped().state.to_snapshot();
    let mut other_version = bootstrapped.clone();
    other_version[1] = 2;
    let mut trailing = bootstrapped.clone();
    trailing.push(0);
    vec![
        ("empty-state".to_string(), MetaState::new().to_snapshot()),
        ("bootstrapped".to_string(), bootstrapped.clone()),
        ("tree".to_string(), full.clone()),
        (
            "tree-truncated".to_string(),
            full[..full.len() / 3].to_vec(),
        ),
        ("other-version".to_string(), other_version),
        ("trailing-byte".to_string(), trailing),
        ("too-short".to_string(), vec![0]),
    ]
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
            "{} is missing or stale; run `UPDATE_EXPECT=1 cargo test -p tiermesh-federation --test meta`",
            path.display()
        );
    }
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        let _ = MetaState::from_snapshot(&bytes);
        files += 1;
    }
    assert!(files > 0, "{} is empty", dir.display());
}
