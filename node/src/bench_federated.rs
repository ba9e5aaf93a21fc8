//! `tiermesh bench federated`: the federated-queries issue's benchmark. (Being written.)

use anyhow::{bail, Result};

/// Options of `tiermesh bench federated`.
#[derive(clap::Args, Debug, Clone)]
pub struct FederatedOptions {
    /// Households in all, spread over the counties.
    #[arg(long, default_value_t = 3_000_000)]
    pub households: u64,
}

/// Runs the benchmark and prints its figures.
pub fn run(_options: &FederatedOptions) -> Result<()> {
    bail!("not written yet")
}
