#!/usr/bin/env bash
# The whole test suite, on a fresh machine too:
#  1. sets up libtorch if it is not there yet;
#  2. runs every Rust test (unit, statistical, end-to-end CLI, SLURM where a
#     cluster answers);
#  3. runs the quick reproduction (resumes: instant when outputs/ is complete)
#     and executes every notebook headless on its outputs.
# INITLAB_TEST_OUTPUTS chooses where step 3 writes (default: outputs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
./libtorch-setup.sh
cargo test --release "$@"

outputs=${INITLAB_TEST_OUTPUTS:-outputs}
python3 -c 'import polars, matplotlib, nbclient, nbformat, ipykernel' 2>/dev/null \
    || python3 -m pip install --quiet -r notebooks/requirements.txt
./target/release/initlab reproduce --scale quick --out "$outputs"
python3 notebooks/run_notebooks.py --outputs "$outputs"
