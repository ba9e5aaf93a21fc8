//! The TierMesh node: its directory and configuration, import, queries, synthetic data and
//! benchmarks. The binary `tiermesh` is a thin command line over this library.
//!
//! Invariant: this is the only crate that reads the clock, draws randomness or (later) opens
//! sockets; it hands time and randomness to `federation` and `crypto` as arguments.

pub mod audit_cli;
pub mod bench;
pub mod bench_federated;
pub mod bench_mesh;
pub mod client;
pub mod config;
pub mod demo;
pub mod federated;
pub mod gen;
pub mod grant_cli;
pub mod import;
pub mod mesh;
pub mod mesh_cli;
pub mod metrics;
pub mod online_import;
pub mod output;
pub mod raft_driver;
pub mod status;
pub mod transport;

/// Exit code: everything asked for was done.
pub const EXIT_OK: i32 = 0;
/// Exit code: the import finished but some rows were rejected (see the rejects file).
pub const EXIT_REJECTED: i32 = 1;
/// Exit code: a fatal error; nothing further was done (rows already reported as stored stay).
pub const EXIT_FATAL: i32 = 2;

/// `N` bytes from the system's secure random number source.
pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the random number source failed"))?;
    Ok(bytes)
}

/// A random `u64` from the system's secure random number source.
pub fn random_u64() -> anyhow::Result<u64> {
    Ok(u64::from_be_bytes(random_bytes()?))
}

/// Logs to stderr at `default` level unless `RUST_LOG` says otherwise.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file or journald gets plain text to grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Today's date from the system clock (UTC).
pub fn today() -> tiermesh_federation::date::Date {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    tiermesh_federation::date::Date::from_days((seconds / 86_400) as i32)
}
