#!/usr/bin/env bash
# The whole test suite, on a fresh machine too:
#  1. sets up libtorch if it is not there yet, and the project's Python
#     environment .venv/ with the notebooks' packages (made on first use,
#     reinstalled only when notebooks/requirements.txt changes);
#  2. runs every Rust test (unit, statistical, end-to-end CLI, SLURM where a
#     cluster answers);
#  3. runs the quick reproduction (resumes: instant when outputs/ is complete)
#     and executes every notebook headless on its outputs, with .venv's python.
# INITLAB_TEST_OUTPUTS chooses where step 3 writes (default: outputs).
# Arguments go to `cargo test --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=scripts/common.sh
. scripts/common.sh
./libtorch-setup.sh
# Python first: a missing python3-venv or an unreachable PyPI should stop the
# run before the build's minutes, not after them.
initlab_venv "$PWD"
initlab_venv_requirements notebooks/requirements.txt

initlab_build_note "initlab and its tests" "about 20 minutes"
cargo test --release "$@"

outputs=${INITLAB_TEST_OUTPUTS:-outputs}
./target/release/initlab reproduce --scale quick --out "$outputs"
"$INITLAB_PY" notebooks/run_notebooks.py --outputs "$outputs"
