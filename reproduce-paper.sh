#!/usr/bin/env bash
# initlab's main job on a fresh machine, set-up included:
#   ./reproduce-paper.sh            the quick reproduction (no downloads needed)
#   ./reproduce-paper.sh paper      the paper's scale (needs MNIST and CIFAR-10)
# Extra arguments go to `initlab reproduce` (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/common.sh
. scripts/common.sh
scale=${1:-quick}
[ $# -gt 0 ] && shift
./libtorch-setup.sh
# Not --quiet: a first build takes minutes, and cargo's progress shows them passing.
initlab_build_note initlab "about 12 minutes"
cargo build --release
exec ./target/release/initlab reproduce --scale "$scale" "$@"
