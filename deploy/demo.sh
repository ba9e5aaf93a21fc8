#!/usr/bin/env bash
# The demo in one command on a fresh Debian machine with Rust: installs the build dependencies
# when missing, builds the release binary, and runs `tiermesh demo` (a real local mesh: national,
# 2 provinces, 3 prefectures, 8 counties on 127.0.0.1). Arguments go to `tiermesh demo`, e.g.
#   deploy/demo.sh --serve          # keep it up and print the commands to query it
#   deploy/demo.sh --data DIR       # DIR/<6-digit county code>/{households,persons}.csv
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-build-deps.sh
cargo build --release --locked -p tiermesh
exec target/release/tiermesh demo "$@"
