# shellcheck shell=bash
# Helpers sourced by libtorch-setup.sh, run-tests.sh and reproduce-paper.sh
# (which run under `set -euo pipefail`): the project's Python environment and
# the note before a long build.

# Messages carry the name of the script that sourced this file.
initlab_me=${0##*/}
initlab_me=${initlab_me%.sh}

initlab_fail() {
    echo "$initlab_me: error: $*" >&2
    exit 1
}

# initlab_venv ROOT: sets INITLAB_VENV to ROOT/.venv and INITLAB_PY to its
# python, creating the environment when it is missing or broken.
#
# Why a venv: the distributions' own Python (Debian 12, Ubuntu 24.04) refuses
# `pip install` outside one (PEP 668, "externally-managed-environment"), and a
# user's Python should not receive the notebooks' packages anyway. It lives in
# the project (ignored by git) so that deleting the checkout deletes it.
initlab_venv() {
    INITLAB_VENV="$1/.venv"
    INITLAB_PY="$INITLAB_VENV/bin/python"
    # Reused while its python runs and has pip. It breaks when the Python it was
    # made from is upgraded or removed (bin/python then dangles) or when an
    # earlier creation was interrupted; either way it is made again.
    if "$INITLAB_PY" -c 'import pip' >/dev/null 2>&1; then
        return 0
    fi
    local base out version
    base=$(command -v python3) \
        || initlab_fail "python3 is not installed; install Python 3 (Debian/Ubuntu: apt-get install python3 python3-venv) and rerun."
    if [ -e "$INITLAB_VENV" ] || [ -L "$INITLAB_VENV" ]; then
        echo "$initlab_me: $INITLAB_VENV is broken (its python does not run or has no pip); making it again."
        rm -rf "$INITLAB_VENV"
    fi
    echo "$initlab_me: creating the project's Python environment $INITLAB_VENV with $base (once; later runs reuse it) ..."
    if ! out=$("$base" -m venv "$INITLAB_VENV" 2>&1) || ! "$INITLAB_PY" -c 'import pip' >/dev/null 2>&1; then
        rm -rf "$INITLAB_VENV" # a half-made venv would only be found broken next time
        # Debian and Ubuntu ship the venv module without ensurepip, which puts pip
        # into a new venv; it comes with the package python3-venv.
        if ! "$base" -c 'import ensurepip' >/dev/null 2>&1; then
            version=$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || version=3
            initlab_fail "$base cannot create a virtual environment: its venv module has no ensurepip. Install the package python3-venv (Debian/Ubuntu: apt-get install python3-venv, or python$version-venv) and rerun."
        fi
        initlab_fail "$base -m venv could not create $INITLAB_VENV: $(printf '%s\n' "$out" | tail -n 1). Fix that (or point PATH at another python3) and rerun."
    fi
}

# initlab_venv_requirements FILE: after initlab_venv, installs FILE into the venv
# unless this very FILE is already installed there. A stamp inside the
# venv holds the SHA-256 of the FILE last installed, so an edited FILE installs
# again and a venv made anew starts without a stamp.
initlab_venv_requirements() {
    local file=$1 stamp="$INITLAB_VENV/.initlab-requirements.sha256" want
    want=$(sha256sum "$file" | cut -d ' ' -f 1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "$initlab_me: installing $file into $INITLAB_VENV (first time or changed; usually a minute or two) ..."
    "$INITLAB_PY" -m pip install --quiet --disable-pip-version-check -r "$file" \
        || initlab_fail "pip could not install $file into $INITLAB_VENV (its message is above: offline? no PyPI access?); fix that and rerun."
    echo "$want" >"$stamp"
}

# initlab_build_note WHAT FIRST_BUILD: one line before `cargo build/test
# --release` when the build has work to do, so that a first build's minutes are
# not silent: what is built and how long a first build usually takes on two
# cores (FIRST_BUILD); the build itself then shows cargo's own progress. No
# line when the binary is newer than every source: cargo only says "Finished".
initlab_build_note() {
    local what=$1 first_build=$2 path sources=()
    if [ ! -e target/release/initlab ]; then
        echo "$initlab_me: building $what in release mode. The first build compiles a few hundred crates: usually $first_build on two cores (this machine has $(nproc)); later builds take seconds to minutes. Cargo's progress follows."
        return 0
    fi
    for path in src build.rs Cargo.toml Cargo.lock assets; do
        [ -e "$path" ] && sources+=("$path")
    done
    if [ ${#sources[@]} -gt 0 ] && [ -n "$(find "${sources[@]}" -newer target/release/initlab -print -quit)" ]; then
        echo "$initlab_me: rebuilding $what: sources changed since the last build (usually a few minutes). Cargo's progress follows."
    fi
}
