//! The mesh with real processes on 127.0.0.1: three voters and several learners over QUIC, the
//! leader killed and replaced, a restarted node catching up, a minority that cannot commit, and
//! keys that are not registered kept out.

use std::io::{BufRead, BufReader};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{free_port, ok, public_key_of, text, tiermesh};

const BIN: &str = env!("CARGO_BIN_EXE_tiermesh");
/// A functional deadline for a condition to become true (not a performance assertion: the
/// figures are measured by the benchmark).
const CONDITION_DEADLINE: Duration = Duration::from_secs(30);

/// A node process and its directory.
struct Node {
    dir: PathBuf,
    key: String,
    addr: String,
    child: Option<Child>,
}

impl Node {
    fn init(root: &Path, name: &str, region: &str) -> Node {
        let dir = root.join(name);
        let output = ok(&[
            "init",
            "--dir",
            dir.to_str().expect("utf-8"),
            "--region",
            region,
            "--name",
            name,
        ]);
        Node {
            dir,
            key: public_key_of(&output),
            addr: format!("127.0.0.1:{}", free_port()),
            child: None,
        }
    }

    fn dir(&self) -> &str {
        self.dir.to_str().expect("utf-8")
    }

    fn start(&mut self, peers: &[&Node]) {
        let mut args = vec![
            "run".to_string(),
            "--dir".to_string(),
            self.dir().to_string(),
            "--listen".to_string(),
            self.addr.clone(),
        ];
        for peer in peers {
            args.push("--peer".to_string());
            args.push(format!("{}@{}", peer.key, peer.addr));
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).expect("read");
        assert!(
            first.starts_with("listening on"),
            "node {} said {first:?}",
            self.dir()
        );
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn status(connect: &Node, key: &Path) -> Result<Value, String> {
    let output = tiermesh(&[
        "mesh",
        "status",
        "--connect",
        &connect.addr,
        "--key",
        key.to_str().expect("utf-8"),
        "--format",
        "json",
    ]);
    if !output.status.success() {
        return Err(text(&output));
    }
    serde_json::from_slice(&output.stdout).map_err(|error| error.to_string())
}

fn wait_for(what: &str, mut condition: impl FnMut() -> Result<bool, String>) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < CONDITION_DEADLINE {
        match condition() {
            Ok(true) => return,
            Ok(false) => last = "not yet".to_string(),
            Err(error) => last = error,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {CONDITION_DEADLINE:?}; last: {last}");
}

fn register(officer: &Path, node: &Node, region: &str, connect: &Node) -> Output {
    tiermesh(&[
        "node",
        "register",
        "--officer-key",
        officer.to_str().expect("utf-8"),
        "--pubkey",
        &node.key,
        "--region",
        region,
        "--addr",
        &node.addr,
        "--name",
        node.dir.file_name().and_then(|n| n.to_str()).expect("name"),
        "--connect",
        &connect.addr,
    ])
}

fn roles(status: &Value) -> Vec<(String, String)> {
    let mut roles: Vec<(String, String)> = status["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|node| {
                    (
                        node["name"].as_str().unwrap_or("").to_string(),
                        node["role"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles
}

fn leader_name(status: &Value) -> Option<String> {
    status["nodes"]
        .as_array()?
        .iter()
        .find(|node| node["leader"].as_bool() == Some(true))
        .and_then(|node| node["name"].as_str().map(str::to_string))
}

#[test]
fn three_voters_and_learners_survive_leader_loss_and_keep_strangers_out() {
    let root = tempfile::tempdir().expect("tempdir");
    let officer = root.path().join("officer.key");
    let officer_out = ok(&["keygen", "--out", officer.to_str().expect("utf-8")]);
    let officer_key = public_key_of(&officer_out);

    let mut national = Node::init(root.path(), "national", "000000000000");
    ok(&[
        "mesh",
        "create",
        "--dir",
        national.dir(),
        "--officer",
        &officer_key,
        "--addr",
        &national.addr,
    ]);
    national.start(&[]);

    let mut guizhou = Node::init(root.path(), "guizhou", "520000000000");
    let mut yunnan = Node::init(root.path(), "yunnan", "530000000000");
    let mut guiyang = Node::init(root.path(), "guiyang", "520100000000");
    let mut county_a = Node::init(root.path(), "nanming", "520102000000");
    let mut county_b = Node::init(root.path(), "kunming-wuhua", "530102000000");
    for (node, region) in [
        (&guizhou, "520000000000"),
        (&yunnan, "530000000000"),
        (&guiyang, "520100000000"),
        (&county_a, "520102000000"),
        (&county_b, "530102000000"),
    ] {
        let output = register(&officer, node, region, &national);
        assert!(output.status.success(), "{}", text(&output));
    }
    for node in [
        &mut guizhou,
        &mut yunnan,
        &mut guiyang,
        &mut county_a,
        &mut county_b,
    ] {
        node.start(&[&national]);
    }
    // The leader adds every registered node as a learner.
    wait_for("all nodes learners", || {
        let status = status(&national, &officer)?;
        Ok(roles(&status)
            .iter()
            .filter(|(_, role)| role == "learner")
            .count()
            == 5)
    });
    // Two provinces become voters: three voters in all.
    for node in [&guizhou, &yunnan] {
        let output = tiermesh(&[
            "mesh",
            "promote",
            &node.key,
            "--officer-key",
            officer.to_str().expect("utf-8"),
            "--connect",
            &national.addr,
        ]);
        assert!(output.status.success(), "{}", text(&output));
    }
    wait_for("three voters", || {
        let status = status(&national, &officer)?;
        Ok(roles(&status)
            .iter()
            .filter(|(_, role)| role == "voter")
            .count()
            == 3)
    });
    // Every node has the full metadata: ask a learner.
    wait_for("a learner sees all six nodes", || {
        let status = status(&county_a, &officer)?;
        Ok(status["nodes"].as_array().map(Vec::len) == Some(6)
            && status["applied"] == status["commit"])
    });

    // Strangers: an unregistered key cannot even connect; an officer of another region
    // cannot register a node outside it.
    let stranger = root.path().join("stranger.key");
    ok(&["keygen", "--out", stranger.to_str().expect("utf-8")]);
    let refused = status(&national, &stranger).expect_err("an unregistered key must be refused");
    assert!(refused.contains("registered"), "{refused}");
    let province_officer = root.path().join("guizhou-officer.key");
    let province_officer_key = public_key_of(&ok(&[
        "keygen",
        "--out",
        province_officer.to_str().expect("utf-8"),
    ]));
    ok(&[
        "officer",
        "appoint",
        "--officer-key",
        officer.to_str().expect("utf-8"),
        "--pubkey",
        &province_officer_key,
        "--jurisdiction",
        "520000000000",
        "--connect",
        &national.addr,
    ]);
    let outsider = Node::init(root.path(), "gansu-county", "620102000000");
    let output = register(&province_officer, &outsider, "620102000000", &national);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("jurisdiction"), "{}", text(&output));
    let stranger_register = register(&stranger, &outsider, "620102000000", &national);
    assert!(
        !stranger_register.status.success(),
        "{}",
        text(&stranger_register)
    );

    // Kill the leader: another voter takes over and writes resume.
    let before = status(&guizhou, &officer).expect("status");
    let leader = leader_name(&before).expect("a leader");
    let killed = match leader.as_str() {
        "national" => &mut national,
        "guizhou" => &mut guizhou,
        "yunnan" => &mut yunnan,
        other => panic!("leader {other} is not a voter"),
    };
    killed.kill();
    let survivor = if leader == "guizhou" {
        &yunnan
    } else {
        &guizhou
    };
    let killed_at = Instant::now();
    let late = Node::init(root.path(), "gansu", "620000000000");
    let output = register(&officer, &late, "620000000000", survivor);
    assert!(
        output.status.success(),
        "writes did not resume: {}",
        text(&output)
    );
    println!(
        "metadata write committed {:?} after the leader was killed",
        killed_at.elapsed()
    );
    let after = status(survivor, &officer).expect("status");
    assert_ne!(leader_name(&after).as_deref(), Some(leader.as_str()));

    // The killed node restarts and catches up.
    let restarted = match leader.as_str() {
        "national" => &mut national,
        "guizhou" => &mut guizhou,
        _ => &mut yunnan,
    };
    restarted.start(&[]);
    let restarted_addr = restarted.addr.clone();
    wait_for("the restarted node catches up", || {
        let output = tiermesh(&[
            "mesh",
            "status",
            "--connect",
            &restarted_addr,
            "--key",
            officer.to_str().expect("utf-8"),
            "--format",
            "json",
        ]);
        if !output.status.success() {
            return Err(text(&output));
        }
        let status: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
        Ok(status["nodes"].as_array().map(Vec::len) == Some(7))
    });

    // A minority cannot commit: freeze two voters, the third alone refuses to commit.
    let (frozen_a, frozen_b, alone) = (&national, &guizhou, &yunnan);
    frozen_a.signal("-STOP");
    frozen_b.signal("-STOP");
    let minority = Node::init(root.path(), "tibet", "540000000000");
    let output = register(&officer, &minority, "540000000000", alone);
    frozen_a.signal("-CONT");
    frozen_b.signal("-CONT");
    assert!(
        !output.status.success(),
        "a minority committed: {}",
        text(&output)
    );
    // Healed: the same write now commits.
    let output = register(&officer, &minority, "540000000000", alone);
    assert!(output.status.success(), "{}", text(&output));

    // A voter that is not the leader is demoted to a learner.
    let now = status(alone, &officer).expect("status");
    let leader = leader_name(&now).expect("a leader");
    let demoted = [&national, &guizhou, &yunnan]
        .into_iter()
        .find(|node| node.dir.file_name().and_then(|n| n.to_str()) != Some(leader.as_str()))
        .expect("a follower voter");
    let output = tiermesh(&[
        "mesh",
        "demote",
        &demoted.key,
        "--officer-key",
        officer.to_str().expect("utf-8"),
        "--connect",
        &alone.addr,
    ]);
    assert!(output.status.success(), "{}", text(&output));
    wait_for("two voters after the demotion", || {
        let status = status(alone, &officer)?;
        Ok(roles(&status)
            .iter()
            .filter(|(_, role)| role == "voter")
            .count()
            == 2)
    });

    // SIGTERM stops a node cleanly (exit status 0).
    county_b.signal("-TERM");
    let mut child = county_b.child.take().expect("running");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < CONDITION_DEADLINE,
            "the node did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
