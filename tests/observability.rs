//! What an operator sees of running nodes on 127.0.0.1: the admin port's `/healthz` and
//! Prometheus `/metrics` (queries by role, rows scanned, refusals by reason, Raft role and
//! indexes, rows stored), one query id in every node's log lines for that query (the trace),
//! and `tiermesh status --dir` with the node running and stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::{gen_and_import, ok, path, public_key_of, text, tiermesh, wait_for, Node};

const AS_OF: &str = "2026-06-30";

/// A plain HTTP/1.0 GET (the admin port speaks HTTP/1.1 and closes after an HTTP/1.0 request).
fn get(addr: &str, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// The value of the sample `name` (with its labels, exactly as exposed) in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn status_json(node: &Node) -> Value {
    serde_json::from_str(&ok(&[
        "status",
        "--dir",
        path(&node.dir),
        "--format",
        "json",
    ]))
    .expect("status json")
}

#[test]
fn admin_port_metrics_traces_and_status() {
    let root = tempfile::tempdir().expect("tempdir");
    let officer = root.path().join("officer.key");
    let officer_key = public_key_of(&ok(&["keygen", "--out", path(&officer)]));
    let staff = root.path().join("staff.key");
    let staff_key = public_key_of(&ok(&["keygen", "--out", path(&staff)]));
    let mut national = Node::init(root.path(), "national", "000000000000")
        .with_admin()
        .with_log(root.path().join("national.log"));
    let mut county = Node::init(root.path(), "nanming", "520102000000")
        .with_admin()
        .with_log(root.path().join("nanming.log"));

    let data = root.path().join("data");
    gen_and_import(&county.dir, &county.region, 400, 3, &data, AS_OF);

    // Stopped: status reads the database and says the node does not answer.
    let stopped = status_json(&county);
    assert_eq!(stopped["store"]["households"], 400, "{stopped:#}");
    assert_eq!(stopped["live"]["running"], false, "{stopped:#}");
    assert_eq!(
        stopped["raft_stored"]["role"], "not part of a mesh yet",
        "{stopped:#}"
    );
    let table = ok(&["status", "--dir", path(&county.dir)]);
    assert!(table.contains("400 households"), "{table}");

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
    ok(&[
        "node",
        "register",
        "--officer-key",
        path(&officer),
        "--pubkey",
        &county.key,
        "--region",
        &county.region,
        "--addr",
        &county.addr,
        "--connect",
        &national.addr,
    ]);
    county.start(&[&national]);
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
        "--valid-days",
        "2",
        "--out",
        path(&grant),
        "--connect",
        &national.addr,
    ]);

    let csv = ok(&[
        "mesh",
        "status",
        "--key",
        path(&officer),
        "--connect",
        &national.addr,
        "--format",
        "csv",
    ]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[0].starts_with("node,name,tier,region,address,role"),
        "{csv}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains(&national.key) && line.contains("voter (leader)")),
        "{csv}"
    );

    let (code, health) = get(national.admin.as_deref().expect("admin"), "/healthz");
    assert_eq!(code, 200, "{health}");
    assert!(health.starts_with("ok: raft leader"), "{health}");
    let (code, _) = get(national.admin.as_deref().expect("admin"), "/nothing");
    assert_eq!(code, 404);

    // The county has the grant's metadata once it applied it; then a national query answers.
    let query = |sql: &str| {
        tiermesh(&[
            "query",
            "--connect",
            &national.addr,
            "--key",
            path(&staff),
            "--grant",
            path(&grant),
            "--format",
            "json",
            "--as-of",
            AS_OF,
            "--deadline",
            "3s",
            sql,
        ])
    };
    let mut answer = Value::Null;
    wait_for("a national query with full coverage", || {
        let output = query("SELECT COUNT(*) FROM households");
        if !output.status.success() {
            return false;
        }
        answer = serde_json::from_slice(&output.stdout).expect("json");
        answer["coverage"]["missing"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    assert_eq!(answer["rows"][0][0], 400, "{answer:#}");
    let query_id = answer["query_id"].as_str().expect("query id").to_string();
    assert_eq!(query_id.len(), 32, "{answer:#}");

    // A refused query: the planner refuses a personal column at the entry node.
    let refused = query("SELECT birth_date, COUNT(*) FROM persons GROUP BY birth_date");
    assert!(!refused.status.success(), "{}", text(&refused));

    let (code, scrape) = get(national.admin.as_deref().expect("admin"), "/metrics");
    assert_eq!(code, 200, "{scrape}");
    let entry_queries =
        sample(&scrape, "tiermesh_queries_total{role=\"entry\"}").expect("entry queries");
    assert!(entry_queries >= 2.0, "{scrape}");
    assert_eq!(
        sample(&scrape, "tiermesh_raft_role{role=\"leader\"}"),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        sample(&scrape, "tiermesh_raft_applied_index").is_some_and(|index| index >= 3.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "tiermesh_mesh_nodes"),
        Some(2.0),
        "{scrape}"
    );
    assert!(
        scrape
            .lines()
            .any(|line| line.starts_with("tiermesh_query_refusals_total{role=\"entry\"")),
        "{scrape}"
    );
    assert!(
        scrape.contains("tiermesh_query_duration_seconds_bucket{"),
        "{scrape}"
    );
    assert!(
        sample(&scrape, "tiermesh_connections_open").is_some_and(|open| open >= 1.0),
        "{scrape}"
    );

    let (_, county_scrape) = get(county.admin.as_deref().expect("admin"), "/metrics");
    assert!(
        sample(&county_scrape, "tiermesh_queries_total{role=\"sub\"}").is_some_and(|n| n >= 1.0),
        "{county_scrape}"
    );
    assert!(
        sample(
            &county_scrape,
            "tiermesh_query_rows_scanned_total{role=\"sub\"}"
        )
        .is_some_and(|rows| rows >= 400.0),
        "{county_scrape}"
    );
    assert_eq!(
        sample(&county_scrape, "tiermesh_rows{table=\"households\"}"),
        Some(400.0),
        "{county_scrape}"
    );
    assert_eq!(
        sample(&county_scrape, "tiermesh_raft_role{role=\"learner\"}"),
        Some(1.0),
        "{county_scrape}"
    );

    // One trace: the query's id is in the span of every node's lines about it.
    for node in [&national, &county] {
        let log_file = node.log.as_ref().expect("log");
        let log = std::fs::read_to_string(log_file).expect("log");
        let span = format!("query{{id={query_id}");
        assert!(
            log.lines()
                .any(|line| line.contains(&span) && line.contains("answered")),
            "{} has no 'answered' line in span {span}:\n{log}",
            log_file.display()
        );
    }

    // Running: status asks the node itself for its live view.
    let running = status_json(&county);
    assert_eq!(running["live"]["running"], true, "{running:#}");
    assert_eq!(running["live"]["role"], "learner", "{running:#}");
    assert_eq!(running["store"]["households"], 400, "{running:#}");
    assert_eq!(running["audit"]["verified"], true, "{running:#}");
    assert!(
        running["audit"]["records"].as_u64() >= Some(1),
        "{running:#}"
    );

    county.kill();
    let after = status_json(&county);
    assert_eq!(after["live"]["running"], false, "{after:#}");
    assert_eq!(after["raft_stored"]["role"], "learner", "{after:#}");
}
