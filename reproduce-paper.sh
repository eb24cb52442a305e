#!/usr/bin/env bash
# initlab's main job on a fresh machine, set-up included:
#   ./reproduce-paper.sh            the quick reproduction (no downloads needed)
#   ./reproduce-paper.sh paper      the paper's scale (needs MNIST and CIFAR-10)
# Extra arguments go to `initlab reproduce` (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scale=${1:-quick}
[ $# -gt 0 ] && shift
./libtorch-setup.sh
cargo build --release --quiet
exec ./target/release/initlab reproduce --scale "$scale" "$@"
