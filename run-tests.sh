#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up libtorch if it is not
# there yet, then runs every Rust test (unit, statistical, end-to-end CLI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./libtorch-setup.sh
cargo test --release "$@"
