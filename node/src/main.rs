//! tiermesh
fn main() {}
