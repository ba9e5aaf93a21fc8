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
