//! Grants and signed requests through their public behaviour: a valid three-link chain, then one
//! case per broken rule (forged bytes, parent hashes, validity windows, officers, every kind of
//! widening by delegation, request signatures, replays, refused SQL, ungranted columns, chain
//! length), and hostile bytes to `Grant::decode`.
//!
//! Keys are seeded, so every expected message is stable; keys are shown by name (`<p52>`).

use std::collections::BTreeSet;

use expect_test::{expect, Expect};
use proptest::prelude::*;
use tiermesh_crypto::SigningKey;
use tiermesh_federation::date::Date;
use tiermesh_federation::grant::{
    check_plan, sign_request, verify, verify_request, verify_with, Grant, GrantError, GrantLink,
    QueryRequest, ReplayCache, Rights, SignedLink, SignedRequest, VerifiedSignatures,
    CLOCK_SKEW_MAX_SECONDS, GRANT_BYTES_MAX, LINKS_MAX, REPLAY_IDS_MAX, REPLAY_WINDOW_SECONDS,
};
use tiermesh_federation::meta::{
    sign_appointment, sign_revocation, Applied, MetaCommand, MetaState, NodeRegistration,
    OfficerAppointment, Revocation, REVOCATION_REASON_BYTES_MAX,
};
use tiermesh_federation::query::{plan, PlanCache};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::schema::Table;

/// The time every case runs at, unless it says otherwise.
const NOW: u64 = 1_800_000_000;
const DAY: u64 = 24 * 60 * 60;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_seed(&[byte; 32]).expect("any 32 bytes are an Ed25519 seed")
}

/// The cast: a national root officer, a province officer for 52, three analysts down the chain,
/// and a stranger.
struct Cast {
    root: SigningKey,
    p52: SigningKey,
    alice: SigningKey,
    bob: SigningKey,
    carol: SigningKey,
    mallory: SigningKey,
    national_node: SigningKey,
}

impl Cast {
    fn new() -> Cast {
        Cast {
            root: key(1),
            p52: key(2),
            alice: key(3),
            bob: key(4),
            carol: key(5),
            mallory: key(6),
            national_node: key(7),
        }
    }

    /// `text` with every known key's hex replaced by `<name>`.
    fn show(&self, text: &str) -> String {
        let names = [
            (&self.root, "root"),
            (&self.p52, "p52"),
            (&self.alice, "alice"),
            (&self.bob, "bob"),
            (&self.carol, "carol"),
            (&self.mallory, "mallory"),
            (&self.national_node, "national_node"),
        ];
        let mut out = text.to_string();
        for (key, name) in names {
            out = out.replace(&key.public_key().to_string(), &format!("<{name}>"));
        }
        out
    }

    /// Bootstrapped with the root officer, then the province officer for 52 appointed.
    fn state(&self) -> MetaState {
        let mut state = MetaState::new();
        let bootstrap = MetaCommand::Bootstrap {
            node: NodeRegistration {
                key: self.national_node.public_key(),
                name: "national".to_string(),
                region: RegionCode::NATIONAL,
                addr: "national.example:7000".to_string(),
            },
            root_officer: self.root.public_key(),
        };
        state.apply(1, &bootstrap).expect("bootstrap");
        let appoint = MetaCommand::AppointOfficer(sign_appointment(
            &self.root,
            OfficerAppointment {
                key: self.p52.public_key(),
                jurisdiction: region("52"),
            },
        ));
        state.apply(2, &appoint).expect("appointment");
        state
    }

    /// p52 -> alice (province 52, depth 2) -> bob (prefecture 5201, depth 1) -> carol (county
    /// 520102, depth 0), each narrower than the last.
    fn chain(&self) -> Grant {
        let root = Grant::issue(&self.p52, root_link(&self.alice));
        let second = root
            .delegate(&self.bob, second_link(&self.bob))
            .expect_err("only alice holds the root");
        assert!(matches!(second, GrantError::NotAudience { .. }));
        let second = root
            .delegate(&self.alice, second_link(&self.bob))
            .expect("alice delegates to bob");
        second
            .delegate(&self.bob, third_link(&self.carol))
            .expect("bob delegates to carol")
    }
}

/// A region from its significant prefix: "5201" -> 520100000000.
fn region(prefix: &str) -> RegionCode {
    format!("{prefix:0<12}").parse().expect("valid region")
}

/// Column names in canonical order (sorted), as a signed link holds them.
fn names(list: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(ToString::to_string).collect();
    names.sort();
    names
}

fn root_link(audience: &SigningKey) -> GrantLink {
    GrantLink {
        id: [0xa0; 16],
        // Filled in by `issue`.
        parent: [0; 32],
        issuer: audience.public_key(),
        audience: audience.public_key(),
        scope: vec![region("52")],
        tables: vec![Table::Households, Table::Persons],
        dimensions: names(&["region_code", "cause", "status", "gender", "birth_date"]),
        measures: names(&["income_per_capita", "members", "household_id"]),
        min_cell: 5,
        not_before: NOW - 10 * DAY,
        expires: NOW + 10 * DAY,
        depth: 2,
    }
}

fn second_link(audience: &SigningKey) -> GrantLink {
    GrantLink {
        id: [0xb0; 16],
        scope: vec![region("5201")],
        tables: vec![Table::Households, Table::Persons],
        dimensions: names(&["region_code", "cause", "gender", "birth_date"]),
        measures: names(&["income_per_capita", "members"]),
        min_cell: 10,
        not_before: NOW - 5 * DAY,
        expires: NOW + 5 * DAY,
        depth: 1,
        ..root_link(audience)
    }
}

fn third_link(audience: &SigningKey) -> GrantLink {
    GrantLink {
        id: [0xc0; 16],
        scope: vec![region("520102"), region("520103")],
        tables: vec![Table::Households],
        dimensions: names(&["region_code", "cause"]),
        measures: names(&["income_per_capita"]),
        min_cell: 10,
        not_before: NOW - DAY,
        expires: NOW + DAY,
        depth: 0,
        ..root_link(audience)
    }
}

fn never_revoked(_: &[u8; 16]) -> bool {
    false
}

fn show_rights(cast: &Cast, rights: &Rights) -> String {
    cast.show(&format!("{rights:#?}"))
}

fn check_verify(cast: &Cast, grant: &Grant, now: u64, expected: Expect) {
    let actual = match verify(grant, &cast.state(), now, &never_revoked) {
        Ok(rights) => format!("ok: audience {}", rights.audience),
        Err(error) => format!("refused: {error}"),
    };
    expected.assert_eq(&cast.show(&actual));
}

#[test]
fn a_valid_three_link_chain_verifies() {
    let cast = Cast::new();
    let grant = cast.chain();
    assert_eq!(grant.links.len(), 3);
    assert_eq!(grant.leaf().audience, cast.carol.public_key());
    assert_eq!(grant.ids(), vec![[0xa0; 16], [0xb0; 16], [0xc0; 16]]);
    assert_eq!(Grant::decode(&grant.encode()), Ok(grant.clone()));
    let rights = verify(&grant, &cast.state(), NOW, &never_revoked).expect("valid chain");
    expect![[r#"
        Rights {
            audience: PublicKey(<carol>),
            scope: [
                RegionCode(520102000000),
                RegionCode(520103000000),
            ],
            tables: [
                Households,
            ],
            dimensions: [
                "cause",
                "region_code",
            ],
            measures: [
                "income_per_capita",
            ],
            min_cell: 10,
            expires: 1800086400,
            grant_ids: [
                [
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                    160,
                ],
                [
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                    176,
                ],
                [
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                    192,
                ],
            ],
        }"#]]
    .assert_eq(&show_rights(&cast, &rights));
    // A prefix of a valid chain is a valid chain with wider rights.
    let prefix = Grant {
        links: grant.links[..2].to_vec(),
    };
    check_verify(&cast, &prefix, NOW, expect!["ok: audience <bob>"]);
}

#[test]
fn issue_sorts_and_deduplicates_the_lists() {
    let cast = Cast::new();
    let mut link = root_link(&cast.alice);
    link.scope = vec![region("5202"), region("5201"), region("5202")];
    link.tables = vec![Table::Persons, Table::Households, Table::Persons];
    link.dimensions = names(&["status", "cause", "status"]);
    let grant = Grant::issue(&cast.p52, link);
    let leaf = grant.leaf();
    assert_eq!(leaf.scope, vec![region("5201"), region("5202")]);
    assert_eq!(leaf.tables, vec![Table::Households, Table::Persons]);
    assert_eq!(leaf.dimensions, names(&["cause", "status"]));
    assert_eq!(leaf.issuer, cast.p52.public_key());
    check_verify(&cast, &grant, NOW, expect!["ok: audience <alice>"]);
}

#[test]
fn a_forged_byte_anywhere_is_refused() {
    forged_bytes_are_refused(None);
}

/// A cache that has seen the genuine chain skips only the arithmetic of exactly those
/// signatures: a forged byte anywhere is still refused, and so are a revoked link and an
/// expired chain whose signatures it remembers.
#[test]
fn a_warm_signature_cache_refuses_what_verify_refuses() {
    let cast = Cast::new();
    let state = cast.state();
    let chain = cast.chain();
    let mut cache = VerifiedSignatures::new();
    verify_with(&chain, &state, NOW, &never_revoked, Some(&mut cache)).expect("genuine");
    assert_eq!(cache.len(), chain.links.len());
    forged_bytes_are_refused(Some(&mut cache));
    let middle = chain.links[1].link.id;
    let revoked = verify_with(&chain, &state, NOW, &|id| *id == middle, Some(&mut cache));
    assert!(
        matches!(revoked, Err(GrantError::Revoked { link: 1, .. })),
        "{revoked:?}"
    );
    let late = chain
        .links
        .iter()
        .map(|link| link.link.expires)
        .min()
        .expect("links")
        + 3_600;
    let expired = verify_with(&chain, &state, late, &never_revoked, Some(&mut cache));
    assert!(
        matches!(expired, Err(GrantError::Expired { .. })),
        "{expired:?}"
    );
    let mut tiny = VerifiedSignatures::new();
    for _ in 0..3 {
        verify_with(&chain, &state, NOW, &never_revoked, Some(&mut tiny)).expect("again");
    }
    assert_eq!(
        tiny.len(),
        chain.links.len(),
        "each signature is remembered once"
    );
}

fn forged_bytes_are_refused(mut cache: Option<&mut VerifiedSignatures>) {
    let cast = Cast::new();
    let state = cast.state();
    let bytes = cast.chain().encode();
    let mut bad_signatures = 0;
    for position in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut forged = bytes.clone();
            forged[position] ^= flip;
            let Ok(grant) = Grant::decode(&forged) else {
                continue;
            };
            match verify_with(&grant, &state, NOW, &never_revoked, cache.as_deref_mut()) {
                Ok(_) => panic!("byte {position} ^ {flip:#04x} still verifies"),
                Err(GrantError::BadSignature { .. }) => bad_signatures += 1,
                Err(_) => {}
            }
        }
    }
    // Most bytes are inside a signed link or a signature: those flips break a signature.
    assert!(
        bad_signatures > bytes.len(),
        "{bad_signatures} of {} flips",
        2 * bytes.len()
    );
}

#[test]
fn a_wrong_parent_hash_is_refused() {
    let cast = Cast::new();
    let mut grant = cast.chain();
    let mut link = grant.links[1].link.clone();
    link.parent[0] ^= 1;
    grant.links[1] = SignedLink::sign(&cast.alice, link);
    check_verify(&cast, &grant, NOW, expect!["refused: link 1 names parent hash ebbaa45f59d8f4d8c32d2c248c31340205eb3dc36e6da9e43b6974a3728d6f2a, expected eabaa45f59d8f4d8c32d2c248c31340205eb3dc36e6da9e43b6974a3728d6f2a"]);
    // The root's parent is zeros.
    let mut grant = cast.chain();
    let mut root = grant.links[0].link.clone();
    root.parent = [1; 32];
    grant.links[0] = SignedLink::sign(&cast.p52, root);
    check_verify(&cast, &grant, NOW, expect!["refused: link 0 names parent hash 0101010101010101010101010101010101010101010101010101010101010101, expected 0000000000000000000000000000000000000000000000000000000000000000"]);
}

#[test]
fn validity_windows_allow_the_clock_skew_and_no_more() {
    let cast = Cast::new();
    let grant = cast.chain();
    let skew = CLOCK_SKEW_MAX_SECONDS;
    // The leaf is the narrowest window: [NOW - DAY, NOW + DAY); the root's is wider.
    check_verify(
        &cast,
        &grant,
        NOW + DAY + skew - 1,
        expect!["ok: audience <carol>"],
    );
    check_verify(
        &cast,
        &grant,
        NOW + DAY + skew,
        expect![
            "refused: link 2 expired at 1800086400; it is 1800086430 (clock skew allowed: 30 s)"
        ],
    );
    check_verify(
        &cast,
        &grant,
        NOW + 20 * DAY,
        expect![
            "refused: link 0 expired at 1800864000; it is 1801728000 (clock skew allowed: 30 s)"
        ],
    );
    check_verify(
        &cast,
        &grant,
        NOW - DAY - skew,
        expect!["ok: audience <carol>"],
    );
    check_verify(&cast, &grant, NOW - DAY - skew - 1, expect!["refused: link 2 is not valid before 1799913600; it is 1799913569 (clock skew allowed: 30 s)"]);
    check_verify(
        &cast,
        &grant,
        0,
        expect![
            "refused: link 0 is not valid before 1799136000; it is 0 (clock skew allowed: 30 s)"
        ],
    );
}

#[test]
fn the_root_issuer_must_be_an_officer_covering_the_scope() {
    let cast = Cast::new();
    let not_officer = Grant::issue(&cast.alice, root_link(&cast.bob));
    check_verify(
        &cast,
        &not_officer,
        NOW,
        expect!["refused: link 0 is issued by <alice>, which is not a registered security officer"],
    );
    let mut link = root_link(&cast.alice);
    link.scope = vec![region("5201"), region("53")];
    let too_wide = Grant::issue(&cast.p52, link.clone());
    check_verify(&cast, &too_wide, NOW, expect!["refused: link 0 grants region 530000000000, outside the jurisdiction 520000000000 of its issuer <p52>"]);
    link.scope = vec![RegionCode::NATIONAL];
    check_verify(&cast, &Grant::issue(&cast.p52, link.clone()), NOW, expect!["refused: link 0 grants region 000000000000, outside the jurisdiction 520000000000 of its issuer <p52>"]);
    // The national root officer may grant anywhere.
    check_verify(
        &cast,
        &Grant::issue(&cast.root, link),
        NOW,
        expect!["ok: audience <alice>"],
    );
}

/// Delegates `change(second_link)` from the root both through `Grant::delegate` and by signing by
/// hand; both must be refused with the same message.
fn check_escalation(change: impl Fn(&mut GrantLink), expected: Expect) {
    let cast = Cast::new();
    let root = Grant::issue(&cast.p52, root_link(&cast.alice));
    let mut child = second_link(&cast.bob);
    change(&mut child);
    let refused = root
        .delegate(&cast.alice, child.clone())
        .expect_err("delegate refuses a widening");
    child.issuer = cast.alice.public_key();
    child.parent = root.links[0].hash();
    // Canonical lists, as `delegate` would write them.
    child.scope.sort();
    child.tables.sort();
    child.dimensions.sort();
    child.measures.sort();
    let mut forged = root.clone();
    forged.links.push(SignedLink::sign(&cast.alice, child));
    let verified =
        verify(&forged, &cast.state(), NOW, &never_revoked).expect_err("verify refuses a widening");
    assert_eq!(refused, verified);
    expected.assert_eq(&cast.show(&verified.to_string()));
}

#[test]
fn delegation_cannot_widen_the_scope() {
    check_escalation(
        |link| link.scope = vec![region("5201"), region("53")],
        expect!["link 1 widens the scope: 530000000000 is not inside 520000000000"],
    );
    check_escalation(
        |link| link.scope = vec![RegionCode::NATIONAL],
        expect!["link 1 widens the scope: 000000000000 is not inside 520000000000"],
    );
}

#[test]
fn delegation_cannot_widen_tables_or_columns() {
    let cast = Cast::new();
    // Bob holds households only; Carol cannot get persons from him.
    let root = Grant::issue(&cast.p52, root_link(&cast.alice));
    let mut second = second_link(&cast.bob);
    second.tables = vec![Table::Households];
    second.dimensions = names(&["cause", "region_code"]);
    let grant = root.delegate(&cast.alice, second).expect("narrower");
    let mut third = third_link(&cast.carol);
    third.tables = vec![Table::Households, Table::Persons];
    expect!["link 2 widens the tables: persons is not granted by link 1"].assert_eq(
        &grant
            .delegate(&cast.bob, third)
            .expect_err("refused")
            .to_string(),
    );
    check_escalation(
        |link| link.dimensions.push("industry".to_string()),
        expect!["link 1 widens the dimensions: industry is not a dimension of link 0"],
    );
    check_escalation(
        |link| link.dimensions.push("relocated".to_string()),
        expect!["link 1 widens the dimensions: relocated is not a dimension of link 0"],
    );
    check_escalation(
        |link| link.measures.push("relocated".to_string()),
        expect!["link 1 widens the measures: relocated is not a measure of link 0"],
    );
}

#[test]
fn delegation_cannot_lower_the_minimum_cell() {
    check_escalation(
        |link| link.min_cell = 4,
        expect!["link 1 lowers the minimum cell size: 4 is below 5"],
    );
}

#[test]
fn delegation_cannot_widen_the_validity_window() {
    check_escalation(|link| link.expires = NOW + 11 * DAY, expect!["link 1 widens the validity window: [1799568000, 1800950400) is not inside [1799136000, 1800864000)"]);
    check_escalation(|link| link.not_before = NOW - 11 * DAY, expect!["link 1 widens the validity window: [1799049600, 1800432000) is not inside [1799136000, 1800864000)"]);
}

#[test]
fn delegation_must_lower_the_depth() {
    check_escalation(
        |link| link.depth = 2,
        expect!["link 1 does not lower the delegation depth: 2 is not below 2"],
    );
    check_escalation(
        |link| link.depth = 255,
        expect!["link 1 does not lower the delegation depth: 255 is not below 2"],
    );
    // Carol's link has depth 0: she cannot delegate.
    let cast = Cast::new();
    let grant = cast.chain();
    let mut fourth = third_link(&cast.mallory);
    fourth.id = [0xd0; 16];
    expect!["link 3 delegates link 2, whose delegation depth is 0"].assert_eq(
        &grant
            .delegate(&cast.carol, fourth)
            .expect_err("refused")
            .to_string(),
    );
}

#[test]
fn only_the_parent_audience_may_delegate() {
    let cast = Cast::new();
    let root = Grant::issue(&cast.p52, root_link(&cast.alice));
    let mut child = second_link(&cast.mallory);
    child.issuer = cast.mallory.public_key();
    child.parent = root.links[0].hash();
    let mut forged = root.clone();
    forged
        .links
        .push(SignedLink::sign(&cast.mallory, child.clone()));
    check_verify(
        &cast,
        &forged,
        NOW,
        expect!["refused: link 1 is issued by <mallory>, but only the audience <alice> of link 0 may delegate it"],
    );
    // Claiming alice as issuer without her key breaks the signature.
    child.issuer = cast.alice.public_key();
    forged.links[1] = SignedLink::sign(&cast.mallory, child);
    check_verify(
        &cast,
        &forged,
        NOW,
        expect!["refused: the signature of link 1 by its issuer <alice> does not verify"],
    );
}

#[test]
fn a_revoked_link_anywhere_in_the_chain_is_refused() {
    let cast = Cast::new();
    let grant = cast.chain();
    let revoked: BTreeSet<[u8; 16]> = [[0xb0; 16]].into();
    let error = verify(&grant, &cast.state(), NOW, &|id: &[u8; 16]| {
        revoked.contains(id)
    })
    .expect_err("revoked");
    expect!["link 1 (grant id b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0) has been revoked"]
        .assert_eq(&error.to_string());
}

fn revocation(signer: &SigningKey, id: [u8; 16], reason: &str) -> MetaCommand {
    MetaCommand::RevokeGrant(sign_revocation(
        signer,
        Revocation {
            grant_id: id,
            reason: reason.to_string(),
            at: NOW,
        },
    ))
}

#[test]
fn revocations_follow_their_rules_and_reach_every_delegated_link() {
    let cast = Cast::new();
    let mut state = cast.state();
    let grant = cast.chain();
    state
        .apply(3, &MetaCommand::RecordGrant(Box::new(grant.clone())))
        .expect("recorded");
    let apply = |state: &mut MetaState, command: &MetaCommand| {
        let index = state.applied_index() + 1;
        match state.apply(index, command) {
            Ok(applied) => format!("{applied:?}"),
            Err(error) => cast.show(&error.to_string()),
        }
    };
    let mut forged = match revocation(&cast.mallory, [0xb0; 16], "mine now") {
        MetaCommand::RevokeGrant(signed) => signed,
        _ => unreachable!("a revocation"),
    };
    forged.signer = cast.root.public_key();
    let refusals = [
        (
            revocation(&cast.mallory, [0xb0; 16], "no reason"),
            expect!["the revocation is refused: <mallory> neither issued grant id b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0 nor is an officer whose jurisdiction covers its scope"],
        ),
        (
            // Carol holds the leaf; she did not issue the link above it.
            revocation(&cast.carol, [0xb0; 16], "no reason"),
            expect!["the revocation is refused: <carol> neither issued grant id b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0 nor is an officer whose jurisdiction covers its scope"],
        ),
        (
            revocation(&cast.root, [0xee; 16], "unknown"),
            expect!["the revocation is refused: grant id eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee is not in any recorded grant"],
        ),
        (
            MetaCommand::RevokeGrant(forged),
            expect!["the signature of <root> over the meta/revocation body does not verify"],
        ),
        (
            revocation(&cast.root, [0xb0; 16], &"x".repeat(REVOCATION_REASON_BYTES_MAX + 1)),
            expect!["the revocation is refused: the reason is 1025 bytes; at most 1024"],
        ),
    ];
    for (command, expected) in refusals {
        expected.assert_eq(&apply(&mut state, &command));
    }
    // A refused revocation changes nothing: the chain still verifies.
    let revoked = |state: &MetaState| {
        let state = state.clone();
        move |id: &[u8; 16]| state.is_revoked(id)
    };
    verify(&grant, &state, NOW, &revoked(&state)).expect("nothing revoked yet");

    // Alice issued link 1 (to bob): she may take it back, and carol's link below goes with it.
    expect!["GrantRevoked { id: [176, 176, 176, 176, 176, 176, 176, 176, 176, 176, 176, 176, 176, 176, 176, 176], grants: 1 }"]
        .assert_eq(&apply(&mut state, &revocation(&cast.alice, [0xb0; 16], "bob moved")));
    let error = verify(&grant, &state, NOW, &revoked(&state)).expect_err("revoked");
    expect!["link 1 (grant id b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0) has been revoked"]
        .assert_eq(&error.to_string());
    let record = state.revocation(&[0xb0; 16]).expect("recorded");
    assert_eq!(
        (record.by, record.reason.as_str(), record.index),
        (cast.alice.public_key(), "bob moved", state.applied_index())
    );
    expect!["the revocation is refused: grant id b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0 was revoked already, at index 9"]
        .assert_eq(&apply(&mut state, &revocation(&cast.root, [0xb0; 16], "again")));

    // An officer whose jurisdiction covers the scope may revoke any link of it.
    assert!(matches!(
        state.apply(20, &revocation(&cast.p52, [0xc0; 16], "audit")),
        Ok(Applied::GrantRevoked { grants: 1, .. })
    ));
    // Revocations survive a snapshot, and a revoked grant cannot be recorded again.
    let restored = MetaState::from_snapshot(&state.to_snapshot()).expect("snapshot");
    assert_eq!(restored, state);
    assert!(restored.is_revoked(&[0xc0; 16]));
    let error = state
        .apply(21, &MetaCommand::RecordGrant(Box::new(grant)))
        .expect_err("revoked chain");
    assert!(error.to_string().contains("revoked"), "{error}");
}

#[test]
fn malformed_links_are_refused() {
    let cast = Cast::new();
    let check = |change: &dyn Fn(&mut GrantLink), expected: Expect| {
        let mut link = root_link(&cast.alice);
        change(&mut link);
        link.issuer = cast.p52.public_key();
        // Signed by hand: `issue` would sort the lists.
        let grant = Grant {
            links: vec![SignedLink::sign(&cast.p52, link)],
        };
        let text = match verify(&grant, &cast.state(), NOW, &never_revoked) {
            Ok(_) => "ok".to_string(),
            Err(error) => error.to_string(),
        };
        expected.assert_eq(&text);
        // What verify refuses for its shape, decode refuses too.
        if text.contains("empty") || text.contains("sorted") || text.contains("grants") {
            assert!(Grant::decode(&grant.encode()).is_err());
        }
    };
    check(
        &|link| link.scope.clear(),
        expect!["link 0: scope is empty; a link names at least one"],
    );
    check(
        &|link| link.tables.clear(),
        expect!["link 0: tables is empty; a link names at least one"],
    );
    check(
        &|link| link.dimensions.reverse(),
        expect!["link 0: dimensions must be sorted and free of duplicates"],
    );
    check(
        &|link| link.scope = vec![region("52"), region("52")],
        expect!["link 0: scope must be sorted and free of duplicates"],
    );
    check(
        &|link| link.dimensions = names(&["nonsense"]),
        expect![[
            r#"link 0 grants dimensions column "nonsense", which none of its tables (households, persons) has"#
        ]],
    );
    check(
        &|link| {
            link.tables = vec![Table::Households];
            link.dimensions = names(&["gender"])
        },
        expect![[
            r#"link 0 grants dimensions column "gender", which none of its tables (households) has"#
        ]],
    );
    check(
        &|link| link.expires = link.not_before,
        expect!["link 0 expires at 1799136000, not after its not_before 1799136000"],
    );
    check(&|link| link.measures.clear(), expect!["ok"]);
}

#[test]
fn a_scope_value_that_is_not_a_region_code_is_refused() {
    let cast = Cast::new();
    let grant = Grant::issue(&cast.p52, root_link(&cast.alice));
    let mut bytes = grant.encode();
    // The first scope region's u64, found by its value: 520000000000 little-endian.
    let needle = 520_000_000_000u64.to_le_bytes();
    let at = bytes
        .windows(8)
        .position(|window| window == needle)
        .expect("scope in the encoding");
    bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    expect!["link 0: scope value 18446744073709551615 is not a valid 12-digit region code"]
        .assert_eq(&Grant::decode(&bytes).expect_err("refused").to_string());
}

#[test]
fn too_many_links_are_refused() {
    let cast = Cast::new();
    let holders: Vec<SigningKey> = (10..10 + LINKS_MAX as u8 + 1).map(key).collect();
    let mut link = root_link(&holders[0]);
    link.depth = 20;
    let mut grant = Grant::issue(&cast.p52, link);
    for index in 1..LINKS_MAX {
        let mut child = root_link(&holders[index]);
        child.id = [index as u8; 16];
        child.depth = 20 - index as u8;
        grant = grant
            .delegate(&holders[index - 1], child)
            .expect("within the limit");
    }
    check_verify(
        &cast,
        &grant,
        NOW,
        expect!["ok: audience d04ab232742bb4ab3a1368bd4615e4e6d0224ab71a016baf8520a332c9778737"],
    );
    let mut child = root_link(&holders[LINKS_MAX]);
    child.id = [0xee; 16];
    child.depth = 0;
    expect!["the grant has 9 links; at most 8 are accepted"].assert_eq(
        &grant
            .delegate(&holders[LINKS_MAX - 1], child.clone())
            .expect_err("refused")
            .to_string(),
    );
    child.issuer = holders[LINKS_MAX - 1].public_key();
    child.parent = grant.links[LINKS_MAX - 1].hash();
    grant
        .links
        .push(SignedLink::sign(&holders[LINKS_MAX - 1], child));
    check_verify(
        &cast,
        &grant,
        NOW,
        expect!["refused: the grant has 9 links; at most 8 are accepted"],
    );
    expect!["the grant has 9 links; at most 8 are accepted"].assert_eq(
        &Grant::decode(&grant.encode())
            .expect_err("refused")
            .to_string(),
    );
    check_verify(
        &cast,
        &Grant { links: Vec::new() },
        NOW,
        expect!["refused: the grant has no links; a grant holds at least its root link"],
    );
}

#[test]
fn a_reused_grant_id_is_refused() {
    let cast = Cast::new();
    let root = Grant::issue(&cast.p52, root_link(&cast.alice));
    let mut child = second_link(&cast.bob);
    child.id = [0xa0; 16];
    expect!["link 1 reuses the grant id a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0 of an earlier link"]
        .assert_eq(
            &root
                .delegate(&cast.alice, child)
                .expect_err("refused")
                .to_string(),
        );
}

fn request(cast: &Cast, sql: &str) -> QueryRequest {
    QueryRequest {
        query_id: [0x51; 16],
        sql: sql.to_string(),
        as_of: Date::from_ymd(2026, 6, 30).expect("date"),
        deadline_ms: (NOW + 10) * 1000,
        entry_node: cast.national_node.public_key(),
        issued_at: NOW,
        grant: cast.chain(),
    }
}

const GOOD_SQL: &str = "SELECT county(region_code) AS county, cause, COUNT(*), \
    AVG(income_per_capita) FROM households WHERE region_code LIKE '520102%' \
    GROUP BY county, cause";

fn check_request(
    cast: &Cast,
    signed: &SignedRequest,
    now: u64,
    replay: &mut ReplayCache,
    expected: Expect,
) {
    let mut signatures = VerifiedSignatures::new();
    let actual = match verify_request(
        signed,
        &cast.state(),
        now,
        &never_revoked,
        replay,
        &mut signatures,
        &mut PlanCache::new(),
    ) {
        Ok((rights, plan)) => format!(
            "ok: audience {}, {} keys, {} aggregates",
            rights.audience,
            plan.keys.len(),
            plan.aggregates.len()
        ),
        Err(error) => format!("refused: {error}"),
    };
    expected.assert_eq(&cast.show(&actual));
}

#[test]
fn a_signed_request_verifies_once() {
    let cast = Cast::new();
    let signed = sign_request(&cast.carol, request(&cast, GOOD_SQL));
    let mut replay = ReplayCache::new();
    check_request(
        &cast,
        &signed,
        NOW,
        &mut replay,
        expect!["ok: audience <carol>, 2 keys, 2 aggregates"],
    );
    check_request(&cast, &signed, NOW + 1, &mut replay, expect!["refused: query id 51515151515151515151515151515151 was already seen; a request is answered once"]);
    // Another node, with its own cache, answers it too.
    check_request(
        &cast,
        &signed,
        NOW + 1,
        &mut ReplayCache::new(),
        expect!["ok: audience <carol>, 2 keys, 2 aggregates"],
    );
}

#[test]
fn a_request_signed_by_another_key_is_refused() {
    let cast = Cast::new();
    let mut replay = ReplayCache::new();
    // Bob is in the chain but is not its leaf's audience.
    for signer in [&cast.bob, &cast.mallory, &cast.p52] {
        let signed = sign_request(signer, request(&cast, GOOD_SQL));
        check_request(&cast, &signed, NOW, &mut replay, expect!["refused: the request's signature does not verify against the grant's audience <carol>"]);
    }
    // A forged field after signing breaks the signature too.
    let mut signed = sign_request(&cast.carol, request(&cast, GOOD_SQL));
    signed.request.sql = signed.request.sql.replace("520102", "520103");
    check_request(
        &cast,
        &signed,
        NOW,
        &mut replay,
        expect![
            "refused: the request's signature does not verify against the grant's audience <carol>"
        ],
    );
    assert!(replay.is_empty(), "refused signatures consume no query id");
}

#[test]
fn stale_and_late_requests_are_refused() {
    let cast = Cast::new();
    let signed = sign_request(&cast.carol, request(&cast, GOOD_SQL));
    let skew = CLOCK_SKEW_MAX_SECONDS;
    check_request(
        &cast,
        &signed,
        NOW - skew - 1,
        &mut ReplayCache::new(),
        expect![
            "refused: the request was issued at 1800000000, more than 30 s from now (1799999969)"
        ],
    );
    check_request(
        &cast,
        &signed,
        NOW - skew,
        &mut ReplayCache::new(),
        expect!["ok: audience <carol>, 2 keys, 2 aggregates"],
    );
    check_request(
        &cast,
        &signed,
        NOW + 10,
        &mut ReplayCache::new(),
        expect![
            "refused: the request's deadline 1800000010000 ms has passed; it is 1800000010000 ms"
        ],
    );
    let mut late = request(&cast, GOOD_SQL);
    late.deadline_ms = u64::MAX;
    let late = sign_request(&cast.carol, late);
    check_request(
        &cast,
        &late,
        NOW + skew + 1,
        &mut ReplayCache::new(),
        expect![
            "refused: the request was issued at 1800000000, more than 30 s from now (1800000031)"
        ],
    );
    let mut odd_date = request(&cast, GOOD_SQL);
    odd_date.as_of = Date::from_days(i32::MAX);
    let odd_date = sign_request(&cast.carol, odd_date);
    check_request(
        &cast,
        &odd_date,
        NOW,
        &mut ReplayCache::new(),
        expect![
            "refused: the request's as_of day number 2147483647 is outside the years 0001 to 9999"
        ],
    );
}

#[test]
fn refused_sql_and_ungranted_columns() {
    let cast = Cast::new();
    let check = |sql: &str, expected: Expect| {
        let signed = sign_request(&cast.carol, request(&cast, sql));
        check_request(&cast, &signed, NOW, &mut ReplayCache::new(), expected);
    };
    check("SELECT head_name, COUNT(*) FROM households GROUP BY head_name", expect!["refused: the query is refused: 1:53: personal column: `head_name` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check("SELECT COUNT(*) FROM households WHERE phone = '1'", expect!["refused: the query is refused: 1:39: personal column: `phone` identifies people and may not be selected, grouped, filtered or aggregated (only birth_date, and only inside age() or age_band())"]);
    check("SELECT status, COUNT(*) FROM households GROUP BY status", expect!["refused: the query groups by column status, which is not a granted dimension (granted: cause, region_code)"]);
    check("SELECT COUNT(*) FROM households WHERE relocated", expect!["refused: the query filters on column relocated, which is not a granted dimension (granted: cause, region_code)"]);
    check("SELECT SUM(members) FROM households", expect!["refused: the query aggregates column members, which is not a granted measure (granted: income_per_capita)"]);
    check("SELECT COUNT(household_id) FROM households", expect!["refused: the query aggregates column household_id, which is not a granted measure (granted: income_per_capita)"]);
    check("SELECT gender, COUNT(*) FROM persons GROUP BY gender", expect!["refused: the query reads table persons, which the grant does not give (granted: households)"]);
    check("SELECT COUNT(*) FROM households WHERE region_code LIKE '53%'", expect!["refused: the query's WHERE names region 53%, outside the grant's scope 520102000000, 520103000000"]);
    check("SELECT COUNT(*) FROM households WHERE county(region_code) IN ('520102000000', '520104000000')", expect!["refused: the query's WHERE names region 520104000000, outside the grant's scope 520102000000, 520103000000"]);
    check("SELECT COUNT(*) FROM households WHERE region_code = '520201001001'", expect!["refused: the query's WHERE names region 520201001001, outside the grant's scope 520102000000, 520103000000"]);
    // COUNT(*) needs no measure; a region prefix that meets the scope, or one excluded, is fine.
    check(
        "SELECT COUNT(*) FROM households",
        expect!["ok: audience <carol>, 0 keys, 1 aggregates"],
    );
    check(
        "SELECT COUNT(*) FROM households WHERE region_code LIKE '52%'",
        expect!["ok: audience <carol>, 0 keys, 1 aggregates"],
    );
    check(
        "SELECT COUNT(*) FROM households WHERE NOT region_code LIKE '53%'",
        expect!["ok: audience <carol>, 0 keys, 1 aggregates"],
    );
    check(
        "SELECT COUNT(*) FROM households WHERE region_code NOT IN ('530000000000')",
        expect!["ok: audience <carol>, 0 keys, 1 aggregates"],
    );
}

#[test]
fn check_plan_counts_derived_dimensions_as_their_base_column() {
    let cast = Cast::new();
    let rights = verify(
        &cast.chain().links[..2].to_vec().into_grant(),
        &cast.state(),
        NOW,
        &never_revoked,
    )
    .expect("bob's grant");
    let as_of = Date::from_ymd(2026, 6, 30).expect("date");
    let check = |sql: &str| check_plan(&plan(sql, as_of).expect("plans"), &rights);
    assert_eq!(
        check("SELECT age_band(birth_date, 10) AS band, COUNT(*) FROM persons GROUP BY band"),
        Ok(())
    );
    assert_eq!(check("SELECT prefecture(region_code) AS p, AVG(income_per_capita) FROM households GROUP BY p"), Ok(()));
    assert!(
        check("SELECT MAX(age(birth_date)) FROM persons").is_err(),
        "birth_date is not a measure"
    );
}

trait IntoGrant {
    fn into_grant(self) -> Grant;
}

impl IntoGrant for Vec<SignedLink> {
    fn into_grant(self) -> Grant {
        Grant { links: self }
    }
}

#[test]
fn the_replay_cache_forgets_after_the_window_and_stays_bounded() {
    let mut cache = ReplayCache::new();
    assert!(cache.insert([1; 16], 100));
    assert!(!cache.insert([1; 16], 100 + REPLAY_WINDOW_SECONDS));
    assert!(cache.insert([2; 16], 100 + REPLAY_WINDOW_SECONDS));
    assert!(
        cache.insert([1; 16], 101 + REPLAY_WINDOW_SECONDS),
        "forgotten after the window"
    );
    assert_eq!(cache.len(), 2);

    // Full of young ids, the cache refuses new ones rather than forget a young id early.
    let mut cache = ReplayCache::new();
    for index in 0..REPLAY_IDS_MAX as u64 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&index.to_le_bytes());
        assert!(cache.insert(id, 1_000 + index % 10));
    }
    assert!(!cache.insert([0xff; 16], 1_010));
    assert_eq!(cache.len(), REPLAY_IDS_MAX);
    // Once the oldest are past the window, there is room again.
    assert!(cache.insert([0xff; 16], 1_001 + REPLAY_WINDOW_SECONDS));
    assert_eq!(cache.len(), REPLAY_IDS_MAX / 10 * 9 + 1);
}

#[test]
fn decode_round_trips_and_bounds_its_input() {
    let cast = Cast::new();
    let grant = cast.chain();
    let bytes = grant.encode();
    assert_eq!(Grant::decode(&bytes), Ok(grant));
    let mut trailing = bytes.clone();
    trailing.push(0);
    expect!["1 bytes follow the end of the grant"]
        .assert_eq(&Grant::decode(&trailing).expect_err("refused").to_string());
    expect!["the grant does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"]
        .assert_eq(&Grant::decode(&bytes[..bytes.len() - 1]).expect_err("refused").to_string());
    let huge = vec![0u8; GRANT_BYTES_MAX + 1];
    expect!["an encoded grant is at most 65536 bytes, got 65537"]
        .assert_eq(&Grant::decode(&huge).expect_err("refused").to_string());
    // A length prefix claiming 2^64 - 1 links allocates nothing up front: the input runs out.
    expect!["the grant does not decode: the bytes end before the value does (truncated, or a length prefix larger than the input)"]
        .assert_eq(&Grant::decode(&[0xff; 8]).expect_err("refused").to_string());
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Grant::decode(&bytes);
    }

    #[test]
    fn mutated_grants_never_panic_and_never_verify(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let cast = Cast::new();
        let original = cast.chain();
        let mut bytes = original.encode();
        for (position, value) in edits {
            let position = position % bytes.len();
            bytes[position] = value;
        }
        bytes.truncate(bytes.len() - cut % 4);
        if let Ok(grant) = Grant::decode(&bytes) {
            if grant != original {
                prop_assert!(verify(&grant, &cast.state(), NOW, &never_revoked).is_err());
            }
        }
    }
}
