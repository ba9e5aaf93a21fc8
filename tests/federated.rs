//! Federated queries over real nodes on 127.0.0.1: a national answer equals the sum of the
//! counties' local answers; a county killed shows up as missing and the rest still answers;
//! `--strict` fails; bad grants and requests are refused; a revoked grant is refused at once;
//! an entry node that cannot confirm its metadata with the Raft leader refuses.

use std::collections::BTreeMap;

use std::path::Path;
use std::process::Output;

use serde_json::Value;

mod support;
use support::{gen_and_import, ok, path, public_key_of, text, tiermesh, wait_for, Node};

const AS_OF: &str = "2026-06-30";
const SQL: &str = "SELECT cause, COUNT(*), SUM(members) FROM households GROUP BY cause";

/// cause -> (households, members) from a JSON answer of `SQL`.
fn by_cause(document: &Value) -> BTreeMap<String, (i64, i64)> {
    document["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row[0].as_str().expect("cause").to_string(),
                (
                    row[1].as_i64().expect("count"),
                    row[2].as_i64().expect("sum"),
                ),
            )
        })
        .collect()
}

fn add(total: &mut BTreeMap<String, (i64, i64)>, part: &BTreeMap<String, (i64, i64)>) {
    for (cause, (count, sum)) in part {
        let entry = total.entry(cause.clone()).or_insert((0, 0));
        entry.0 += count;
        entry.1 += sum;
    }
}

fn federated(national: &Node, staff: &Path, grant: &Path, sql: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "query",
        "--connect",
        &national.addr,
        "--key",
        path(staff),
        "--grant",
        path(grant),
        "--format",
        "json",
        "--as-of",
        AS_OF,
        "--deadline",
        "3s",
    ];
    args.extend_from_slice(extra);
    args.push(sql);
    tiermesh(&args)
}

#[test]
fn national_answers_sum_the_counties_and_say_what_is_missing() {
    let root = tempfile::tempdir().expect("tempdir");
    let officer = root.path().join("officer.key");
    let officer_key = public_key_of(&ok(&["keygen", "--out", path(&officer)]));
    let staff = root.path().join("staff.key");
    let staff_key = public_key_of(&ok(&["keygen", "--out", path(&staff)]));

    let mut national = Node::init(root.path(), "national", "000000000000");
    let mut guizhou = Node::init(root.path(), "guizhou", "520000000000");
    let mut counties = vec![
        Node::init(root.path(), "nanming", "520102000000"),
        Node::init(root.path(), "yunyan", "520103000000"),
        Node::init(root.path(), "wuhua", "530102000000"),
    ];
    // Each county imports its own generated data and answers locally first.
    let mut expected = BTreeMap::new();
    let mut local = Vec::new();
    for (seed, county) in counties.iter().enumerate() {
        let data = root.path().join(format!("data-{seed}"));
        gen_and_import(
            &county.dir,
            &county.region,
            300 + 100 * seed,
            seed as u64,
            &data,
            AS_OF,
        );
        let answer: Value = serde_json::from_str(&ok(&[
            "query",
            "--dir",
            path(&county.dir),
            "--format",
            "json",
            "--as-of",
            AS_OF,
            SQL,
        ]))
        .expect("json");
        let part = by_cause(&answer);
        add(&mut expected, &part);
        local.push(part);
    }

    ok(&[
        "mesh",
        "create",
        "--dir",
        path(&national.dir),
        "--officer",
        &officer_key,
        "--addr",
        &national.addr,
    ]);
    national.start(&[]);
    let register = |node: &Node| {
        ok(&[
            "node",
            "register",
            "--officer-key",
            path(&officer),
            "--pubkey",
            &node.key,
            "--region",
            &node.region,
            "--addr",
            &node.addr,
            "--connect",
            &national.addr,
        ]);
    };
    register(&guizhou);
    for county in &counties {
        register(county);
    }
    guizhou.start(&[&national]);
    for county in counties.iter_mut() {
        county.start(&[&national]);
    }
    let grant = root.path().join("national.grant");
    ok(&[
        "grant",
        "issue",
        "--officer-key",
        path(&officer),
        "--audience",
        &staff_key,
        "--scope",
        "000000000000",
        "--min-cell",
        "1",
        "--out",
        path(&grant),
        "--connect",
        &national.addr,
    ]);

    // A provincial grant too, asked at the province's node (used when the leader is gone, below).
    let province_grant = root.path().join("guizhou.grant");
    ok(&[
        "grant",
        "issue",
        "--officer-key",
        path(&officer),
        "--audience",
        &staff_key,
        "--scope",
        "520000000000",
        "--min-cell",
        "1",
        "--out",
        path(&province_grant),
        "--connect",
        &national.addr,
    ]);

    // Every county answers once it has caught up with the metadata: the national answer is the
    // sum of the local ones.
    let mut last = String::new();
    wait_for("a complete national answer", || {
        let output = federated(&national, &staff, &grant, SQL, &["--strict"]);
        last = text(&output);
        output.status.success()
    });
    let output = federated(&national, &staff, &grant, SQL, &[]);
    let answer: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", text(&output)));
    assert_eq!(by_cause(&answer), expected, "{last}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("0 missing"),
        "{}",
        text(&output)
    );

    // Every node keeps a signed audit log. An officer fetches a county's head (remembered in a
    // state file); after another query the new head proves it extends the one seen before.
    let audit_state = root.path().join("audit-heads.json");
    let audit_verify = |node: &Node| {
        tiermesh(&[
            "audit",
            "verify",
            "--connect",
            &node.addr,
            "--key",
            path(&officer),
            "--state",
            path(&audit_state),
        ])
    };
    let seen = audit_verify(&counties[1]);
    assert_eq!(seen.status.code(), Some(0), "{}", text(&seen));
    assert!(text(&seen).contains("first head seen"), "{}", text(&seen));
    assert!(federated(&national, &staff, &grant, SQL, &[])
        .status
        .success());
    let extended = audit_verify(&counties[1]);
    assert_eq!(extended.status.code(), Some(0), "{}", text(&extended));
    assert!(
        text(&extended).contains("extends the head seen before"),
        "{}",
        text(&extended)
    );
    let offline = tiermesh(&["audit", "verify", "--dir", path(&counties[1].dir)]);
    assert_eq!(offline.status.code(), Some(0), "{}", text(&offline));
    let shown = ok(&[
        "audit",
        "show",
        "--dir",
        path(&counties[1].dir),
        "--format",
        "json",
    ]);
    assert!(shown.lines().count() >= 2, "{shown}");
    assert!(shown.contains("\"role\":\"sub\""), "{shown}");

    // A county killed: it is reported missing with its reason, the rest still answers.
    counties[2].kill();
    let output = federated(&national, &staff, &grant, SQL, &[]);
    assert!(output.status.success(), "{}", text(&output));
    let answer: Value = serde_json::from_slice(&output.stdout).expect("json");
    let mut rest = BTreeMap::new();
    add(&mut rest, &local[0]);
    add(&mut rest, &local[1]);
    assert_eq!(by_cause(&answer), rest);
    let coverage = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(coverage.contains("missing 530102000000"), "{coverage}");
    let missing = answer["coverage"]["missing"].as_array().expect("missing");
    assert_eq!(missing.len(), 1, "{answer}");
    assert_eq!(missing[0]["region"], "530102000000");
    let answered: Vec<&str> = answer["coverage"]["answered"]
        .as_array()
        .expect("answered")
        .iter()
        .map(|entry| entry["region"].as_str().expect("region"))
        .collect();
    for region in ["520102000000", "520103000000"] {
        assert!(answered.contains(&region), "{answered:?}");
    }
    assert!(answer["metadata_index"]
        .as_u64()
        .is_some_and(|index| index > 0));
    let strict = federated(&national, &staff, &grant, SQL, &["--strict"]);
    assert!(!strict.status.success(), "{}", text(&strict));
    assert!(text(&strict).contains("530102000000"), "{}", text(&strict));

    // Refusals: a personal column, a grant signed by someone who is not an officer, a forged
    // grant byte, a request signed by a key that is not the grant's audience.
    let personal = federated(
        &national,
        &staff,
        &grant,
        "SELECT head_name, COUNT(*) FROM households GROUP BY head_name",
        &[],
    );
    assert!(!personal.status.success());
    assert!(text(&personal).contains("head_name"), "{}", text(&personal));
    let self_made = root.path().join("self.grant");
    ok(&[
        "grant",
        "issue",
        "--officer-key",
        path(&staff),
        "--audience",
        &staff_key,
        "--scope",
        "000000000000",
        "--out",
        path(&self_made),
    ]);
    let refused = federated(&national, &staff, &self_made, SQL, &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("officer"), "{}", text(&refused));
    let forged = root.path().join("forged.grant");
    let mut bytes = std::fs::read(&grant).expect("grant");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&forged, bytes).expect("write");
    let refused = federated(&national, &staff, &forged, SQL, &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    let refused = federated(&national, &officer, &grant, SQL, &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("refused"), "{}", text(&refused));

    // No node trusts its parent's word: a county refuses bad sub-queries sent straight to it.
    every_node_verifies(&counties[0], &staff, &officer, &grant);

    // Revocation, sent to a county (it reaches the leader): once the command has returned, the
    // very next query under the grant is refused, and the mesh's list says so.
    let listed: Value = serde_json::from_str(&ok(&[
        "grant",
        "list",
        "--key",
        path(&officer),
        "--connect",
        &counties[0].addr,
        "--format",
        "json",
    ]))
    .expect("json");
    let shown: Value =
        serde_json::from_str(&ok(&["grant", "show", path(&grant), "--format", "json"]))
            .expect("json");
    let id = shown["links"][0]["id"].as_str().expect("id").to_string();
    let status_of = |list: &Value| {
        list["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .find(|entry| entry["id"] == id.as_str())
            .map(|entry| entry["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status_of(&listed).as_deref(), Some("active"), "{listed}");
    let revoke = |key: &Path| {
        tiermesh(&[
            "grant",
            "revoke",
            "--officer-key",
            path(key),
            "--grant-id",
            &id,
            "--reason",
            "staff member left",
            "--connect",
            &counties[0].addr,
        ])
    };
    // Only the issuer or an officer over the scope may revoke.
    let not_allowed = revoke(&staff);
    assert!(!not_allowed.status.success(), "{}", text(&not_allowed));
    assert!(
        text(&not_allowed).contains("neither issued"),
        "{}",
        text(&not_allowed)
    );
    let revoked = revoke(&officer);
    assert!(revoked.status.success(), "{}", text(&revoked));
    let refused = federated(&national, &staff, &grant, SQL, &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains("revoked"), "{}", text(&refused));
    let listed: Value = serde_json::from_str(&ok(&[
        "grant",
        "list",
        "--key",
        path(&officer),
        "--connect",
        &national.addr,
        "--format",
        "json",
        "--region",
        "520000000000",
    ]))
    .expect("json");
    assert!(
        status_of(&listed).is_some_and(|status| status.starts_with("revoked at index")),
        "{listed}"
    );
    let again = revoke(&officer);
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("revoked already"), "{}", text(&again));

    // The province answers under its own grant while it can confirm its metadata with the
    // leader; with the leader (the only voter) gone it cannot, and refuses rather than answer
    // under a grant that might have been revoked meanwhile.
    let province_sql = "SELECT COUNT(*) FROM households";
    wait_for("an answer at the province", || {
        federated(&guizhou, &staff, &province_grant, province_sql, &[])
            .status
            .success()
    });
    national.kill();
    let cut_off = federated(&guizhou, &staff, &province_grant, province_sql, &[]);
    assert!(!cut_off.status.success(), "{}", text(&cut_off));
    assert!(
        text(&cut_off).contains("cannot confirm its metadata is current"),
        "{}",
        text(&cut_off)
    );

    // Rewriting a county's audit history is caught by the head the officer kept, even when the
    // rewrite is re-signed with the county's own audit key (a fork), and so is a deletion.
    let county = &mut counties[1];
    let latest = audit_verify(county);
    assert_eq!(latest.status.code(), Some(0), "{}", text(&latest));
    county.kill();
    let audit_dir = county.dir.join("audit");
    let log_file = audit_dir.join("audit.log");
    let original = std::fs::read(&log_file).expect("audit log");
    let node_key = tiermesh::config::NodeDir::open(&county.dir)
        .and_then(|dir| dir.signing_key())
        .expect("node key");
    let audit_key = tiermesh::audit_cli::audit_key(&audit_dir).expect("audit key");
    let records = tiermesh_storage::audit_log::read_log(
        &log_file,
        &node_key.public_key(),
        &audit_key.public_key(),
    )
    .expect("the log verifies")
    .records;
    let forged_dir = root.path().join("forged-audit");
    {
        let mut forged = tiermesh_storage::audit_log::AuditLog::open(
            &forged_dir,
            node_key.public_key(),
            tiermesh::audit_cli::audit_key(&audit_dir).expect("audit key"),
        )
        .expect("forged log");
        for (index, record) in records.into_iter().enumerate() {
            let mut record = record;
            if index == 0 {
                record.rows_scanned += 1;
            }
            let time = record.time_ms;
            forged.append(record, time).expect("append");
        }
    }
    std::fs::copy(forged_dir.join("audit.log"), &log_file).expect("replace the log");
    county.start(&[]);
    let forked = audit_verify(county);
    assert_eq!(forked.status.code(), Some(1), "{}", text(&forked));
    assert!(text(&forked).contains("a fork"), "{}", text(&forked));
    county.kill();
    // The original history minus its newest record and head: the log shrank.
    let text_log = String::from_utf8(original).expect("utf-8");
    let kept: Vec<&str> = text_log.lines().collect();
    std::fs::write(
        &log_file,
        format!("{}\n", kept[..kept.len() - 2].join("\n")),
    )
    .expect("write");
    county.start(&[]);
    let shrunk = audit_verify(county);
    assert_eq!(shrunk.status.code(), Some(1), "{}", text(&shrunk));
    assert!(text(&shrunk).contains("shrank"), "{}", text(&shrunk));
}

/// Sends sub-queries directly to `county`, each broken in one way, and expects each refused
/// with its reason; a good one is answered once, and its replay refused.
fn every_node_verifies(county: &Node, staff_file: &Path, officer_file: &Path, grant_file: &Path) {
    use tiermesh_federation::grant::{sign_request, Grant, GrantLink, QueryRequest, SignedLink};
    use tiermesh_federation::wire::{Message, SubQuery};

    let staff = tiermesh::client::load_key(staff_file).expect("staff key");
    let officer = tiermesh::client::load_key(officer_file).expect("officer key");
    let grant = Grant::decode(&std::fs::read(grant_file).expect("grant")).expect("decode");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let county_key: tiermesh_crypto::PublicKey = county.key.parse().expect("key");
    let mut next_id = 0u8;
    let mut request = |sql: &str, issued_at: u64, grant: Grant| {
        next_id += 1;
        QueryRequest {
            query_id: [next_id; 16],
            sql: sql.to_string(),
            as_of: tiermesh_federation::date::Date::parse_iso(AS_OF).expect("date"),
            deadline_ms: now_ms + 10_000,
            entry_node: county_key,
            issued_at,
            grant,
        }
    };
    let now = now_ms / 1000;
    let good = sign_request(&staff, request(SQL, now, grant.clone()));
    let mut forged = sign_request(&staff, request(SQL, now, grant.clone()));
    forged.request.sql = SQL.replace("COUNT(*)", "COUNT(members)");
    let stale = sign_request(&staff, request(SQL, now - 3_600, grant.clone()));
    let wrong_audience = sign_request(&officer, request(SQL, now, grant.clone()));
    let personal = sign_request(
        &staff,
        request(
            "SELECT phone, COUNT(*) FROM households GROUP BY phone",
            now,
            grant.clone(),
        ),
    );
    // The staff member hand-signs a child link that lowers k (1 -> 0) and raises the depth.
    let mut wider = grant.leaf().clone();
    wider.id = [0xee; 16];
    wider.parent = grant.links[0].hash();
    wider.issuer = staff.public_key();
    wider.min_cell = 0;
    wider.depth = 9;
    let mut escalated = grant.clone();
    escalated
        .links
        .push(SignedLink::sign(&staff, GrantLink { ..wider }));
    let escalated = sign_request(&staff, request(SQL, now, escalated));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let session = tiermesh::client::Session::connect(&staff, &county.addr, Some(county_key))
            .await
            .expect("connect");
        let send = |signed| {
            Message::SubQuery(Box::new(SubQuery {
                request: signed,
                metadata_index: 1,
                hop_deadline_ms: now_ms + 10_000,
            }))
        };
        for (what, signed, reason) in [
            ("forged SQL", forged, "signature"),
            ("stale request", stale, "issued"),
            ("wrong audience", wrong_audience, "audience"),
            ("personal column", personal, "phone"),
            ("escalation by delegation", escalated, "link 1"),
        ] {
            match session.request(&send(signed)).await.expect("answer") {
                Message::Error { message } => assert!(
                    message.to_lowercase().contains(reason),
                    "{what}: refused, but the reason '{message}' does not mention '{reason}'"
                ),
                other => panic!("{what}: not refused: {other:?}"),
            }
        }
        match session.request(&send(good.clone())).await.expect("answer") {
            Message::SubQueryAnswer(answer) => assert_eq!(answer.coverage.missing.len(), 0),
            other => panic!("a good sub-query was not answered: {other:?}"),
        }
        match session.request(&send(good)).await.expect("answer") {
            Message::Error { message } => assert!(
                message.contains("replay") || message.contains("seen"),
                "{message}"
            ),
            other => panic!("a replayed query id was answered: {other:?}"),
        }
        session.close().await;
    });
}
