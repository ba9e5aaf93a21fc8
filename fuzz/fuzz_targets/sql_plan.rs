//! Fuzz target: `query::plan` never panics on any text, and a plan it accepts executes, merges and
//! finalises over a small fixed image (the property is in `checks/sql_plan.rs`, which the corpus
//! replay test shares).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tiermesh_federation::image::Image;

#[path = "../checks/sql_plan.rs"]
mod check;

static IMAGE: OnceLock<Image> = OnceLock::new();

fuzz_target!(|bytes: &[u8]| check::check(bytes, IMAGE.get_or_init(check::image)));
