//! Helpers shared by the integration tests: run the real `tiermesh` binary, show its output,
//! read what it prints.
// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_tiermesh");

/// Runs `tiermesh` with `args` to the end.
pub fn tiermesh(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run tiermesh")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `tiermesh`, which must succeed; its stdout.
pub fn ok(args: &[&str]) -> String {
    let output = tiermesh(args);
    assert!(output.status.success(), "{args:?}\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A path as the `&str` an argument list wants.
pub fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The key printed on the `public key ...` line of `keygen` or `init`.
pub fn public_key_of(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("public key "))
        .expect("a 'public key' line")
        .trim()
        .to_string()
}

/// Ports the tests' nodes listen on: below Linux's ephemeral range (32768 and up), so that no
/// client endpoint, which binds an ephemeral port, takes a port chosen for a node that has not
/// started yet.
const NODE_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A UDP port on 127.0.0.1 in `NODE_PORTS` that was free a moment ago.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut random = rand::rngs::OsRng;
    for _ in 0..1_000 {
        let port = random.gen_range(NODE_PORTS);
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port in {NODE_PORTS:?}");
}

/// A node of a test mesh: its directory (made by `tiermesh init`), key, QUIC address and, when
/// started, its `tiermesh run` process (killed when dropped).
pub struct Node {
    pub dir: std::path::PathBuf,
    pub key: String,
    pub addr: String,
    pub region: String,
    /// The admin HTTP port it is started with, if any (`with_admin`).
    pub admin: Option<String>,
    /// Where its stderr goes (`with_log`, at `RUST_LOG=info`); else nowhere, at `warn`.
    pub log: Option<std::path::PathBuf>,
    pub child: Option<std::process::Child>,
}

impl Node {
    /// `tiermesh init` of `root/name` for `region`, with a free port.
    pub fn init(root: &Path, name: &str, region: &str) -> Node {
        let dir = root.join(name);
        let output = ok(&[
            "init",
            "--dir",
            path(&dir),
            "--region",
            region,
            "--name",
            name,
        ]);
        Node {
            dir,
            key: public_key_of(&output),
            addr: format!("127.0.0.1:{}", free_port()),
            region: region.to_string(),
            admin: None,
            log: None,
            child: None,
        }
    }

    /// Starts with an admin port (a TCP port from the same range).
    pub fn with_admin(mut self) -> Node {
        self.admin = Some(format!("127.0.0.1:{}", free_port()));
        self
    }

    /// Writes its log lines to `log`.
    pub fn with_log(mut self, log: std::path::PathBuf) -> Node {
        self.log = Some(log);
        self
    }

    /// `tiermesh run`, trusting `peers` before the registry arrives; returns once it listens
    /// (and, with an admin port, once that is open).
    pub fn start(&mut self, peers: &[&Node]) {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut args = vec![
            "run".to_string(),
            "--dir".into(),
            path(&self.dir).into(),
            "--listen".into(),
            self.addr.clone(),
        ];
        if let Some(admin) = &self.admin {
            args.push("--admin".into());
            args.push(admin.clone());
        }
        for peer in peers {
            args.push("--peer".into());
            args.push(format!("{}@{}", peer.key, peer.addr));
        }
        let (level, stderr) = match &self.log {
            Some(log) => (
                "info",
                Stdio::from(std::fs::File::create(log).expect("log file")),
            ),
            None => ("warn", Stdio::null()),
        };
        let mut child = Command::new(BIN)
            .args(&args)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn node");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        lines.read_line(&mut first).expect("read");
        assert!(first.starts_with("listening on"), "{first:?}");
        if let Some(admin) = &self.admin {
            let mut second = String::new();
            lines.read_line(&mut second).expect("read");
            assert_eq!(second.trim(), format!("admin on http://{admin}"));
        }
        self.child = Some(child);
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `tiermesh gen` of `households` households for the county `region` into `data`, then a local
/// `tiermesh import` of both files into the node directory `dir`, which must store every row.
/// Returns the county's folder of generated files.
pub fn gen_and_import(
    dir: &Path,
    region: &str,
    households: usize,
    seed: u64,
    data: &Path,
    as_of: &str,
) -> std::path::PathBuf {
    ok(&[
        "gen",
        "--region",
        region,
        "--households",
        &households.to_string(),
        "--seed",
        &seed.to_string(),
        "--out",
        path(data),
        "--as-of",
        as_of,
    ]);
    let folder = data.join(&region[..6]);
    let import = tiermesh(&[
        "import",
        "--dir",
        path(dir),
        "--quiet",
        "--as-of",
        as_of,
        path(&folder.join("households.csv")),
        path(&folder.join("persons.csv")),
    ]);
    assert_eq!(import.status.code(), Some(0), "{}", text(&import));
    folder
}

/// How long a test waits for a condition (a functional deadline, not a performance assertion).
pub const CONDITION_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `condition` every 100 ms until it holds; panics naming `what` after
/// `CONDITION_DEADLINE`.
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while started.elapsed() < CONDITION_DEADLINE {
        if condition() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what}: not within {CONDITION_DEADLINE:?}");
}
