#!/usr/bin/env bash
# Obtains a CPU libtorch 2.13.0 (the version tch 0.26 targets) into ./libtorch, once.
#
# The official libtorch archives are often unreachable; PyPI is not. The torch
# wheel on PyPI carries a complete libtorch (lib/ and include/). We keep only the
# CPU part of it, plus the two small CUDA runtime stubs that libtorch_cpu.so is
# linked against (they load fine without any GPU), and drop libtorch.so's need for
# libtorch_cuda.so so that nothing asks for the 2.5 GB of CUDA libraries.
#
# Every wheel is pinned by file name and SHA-256 and checked, downloaded or
# cached, before anything is extracted; so are its members' paths (no absolute
# path, no `..`). pip runs from the project's virtual environment (.venv/),
# made only when something has to be downloaded.
#
#   ./libtorch-setup.sh            set up ./libtorch (does nothing if already done)
#   LIBTORCH=/path ./libtorch-setup.sh   use an existing libtorch 2.13 instead
#   INITLAB_CACHE=/dir ...         where downloads are cached (~/.cache/initlab)
set -euo pipefail

TORCH_VERSION=2.13.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
# PyPI's published SHA-256 of each file (https://pypi.org/simple/<project>/),
# checked on 3 December 2026 against the files this script downloaded.
TORCH_WHEEL=torch-$TORCH_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_SHA256=60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7
CUDART_WHEEL=nvidia_cuda_runtime-$CUDART_VERSION-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
CUDART_SHA256=7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
CUPTI_WHEEL=nvidia_cuda_cupti-$CUPTI_VERSION-py3-none-manylinux_2_25_x86_64.whl
CUPTI_SHA256=4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest="$here/libtorch"
cache="${INITLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/initlab}/wheels"
marker="$dest/.initlab-complete"
# shellcheck source=scripts/common.sh
. "$here/scripts/common.sh"

die() {
    echo "libtorch-setup: error: $1" >&2
    cat >&2 <<EOM

initlab needs libtorch $TORCH_VERSION (CPU). Ways to provide it:
  * run this script on a machine that reaches PyPI, or copy the cache
    ($cache) from such a machine and rerun it;
  * or point LIBTORCH at an existing libtorch $TORCH_VERSION, e.g.
        LIBTORCH=/opt/libtorch ./libtorch-setup.sh
    (a directory with lib/libtorch_cpu.so and include/), or at an installed
    PyTorch $TORCH_VERSION:
        LIBTORCH=\$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))') ./libtorch-setup.sh
EOM
    exit 1
}

check_libtorch_dir() { # dir -> 0 if it looks like a usable libtorch
    [ -f "$1/lib/libtorch_cpu.so" ] && [ -f "$1/lib/libc10.so" ] && [ -d "$1/include/torch" ]
}

# An existing LIBTORCH wins: link ./libtorch to it so the build finds it.
if [ -n "${LIBTORCH:-}" ] && [ "$(cd "$LIBTORCH" 2>/dev/null && pwd)" != "$dest" ]; then
    check_libtorch_dir "$LIBTORCH" || die "LIBTORCH=$LIBTORCH is not a libtorch directory (expected lib/libtorch_cpu.so, lib/libc10.so and include/torch)."
    if [ -L "$dest" ] && [ "$(readlink "$dest")" = "$LIBTORCH" ]; then
        echo "libtorch-setup: ./libtorch already points at LIBTORCH=$LIBTORCH; nothing to do."
        exit 0
    fi
    [ -e "$dest" ] && [ ! -L "$dest" ] && die "./libtorch exists and is not a link; remove it to use LIBTORCH=$LIBTORCH."
    ln -sfn "$LIBTORCH" "$dest"
    echo "libtorch-setup: ./libtorch now points at LIBTORCH=$LIBTORCH."
    exit 0
fi

if [ -f "$marker" ] && check_libtorch_dir "$dest"; then
    echo "libtorch-setup: libtorch $(cat "$dest/build-version") is already set up in $dest; nothing to do."
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) die "no CPU libtorch wheel is fetched automatically for $(uname -s) $(uname -m) (only Linux x86_64)." ;;
esac
# The checks and the extraction need only Python's standard library.
command -v python3 >/dev/null 2>&1 || die "python3 is not installed (it checks and unpacks the torch wheel, and runs pip to fetch it)."

# What a failed run leaves behind is removed: a download folder, a half-made libtorch.
download_dir=""
tmp="$dest.partial"
cleanup() {
    local status=$?
    [ -n "$download_dir" ] && rm -rf "$download_dir"
    [ "$status" -ne 0 ] && rm -rf "$tmp"
    return "$status"
}
trap cleanup EXIT

mkdir -p "$cache"
fetch() { # project version file sha256 platform: $cache/file, downloaded if absent, verified
    local project=$1 version=$2 file=$3 sha256=$4 platform=$5
    if [ -f "$cache/$file" ]; then
        echo "libtorch-setup: using cached $file"
    else
        initlab_venv "$here"
        # pip downloads into a folder of its own and checks the pinned hash itself
        # (hash-checking mode), so an altered or cut-short download never takes
        # the cache's file name.
        download_dir=$(mktemp -d "$cache/.download.XXXXXX")
        printf '%s==%s --hash=sha256:%s\n' "$project" "$version" "$sha256" >"$download_dir/requirement.txt"
        echo "libtorch-setup: downloading $file from PyPI into $cache ..."
        "$INITLAB_PY" -m pip download --disable-pip-version-check --require-hashes --no-deps --only-binary=:all: \
            --python-version 3.11 --platform "$platform" \
            --dest "$download_dir" -r "$download_dir/requirement.txt" \
            || die "could not download $project==$version with pip (offline? no PyPI access? a hash mismatch is reported by pip above)."
        [ -f "$download_dir/$file" ] || die "pip did not download $file for $project==$version (it fetched: $(cd "$download_dir" && ls -m))."
        mv "$download_dir/$file" "$cache/$file"
        rm -rf "$download_dir"
        download_dir=""
    fi
    python3 "$here/scripts/libtorch_wheels.py" verify "$cache/$file" "$sha256" || exit 1
}
fetch torch "$TORCH_VERSION" "$TORCH_WHEEL" "$TORCH_SHA256" manylinux_2_28_x86_64
fetch nvidia-cuda-runtime "$CUDART_VERSION" "$CUDART_WHEEL" "$CUDART_SHA256" manylinux2014_x86_64
fetch nvidia-cuda-cupti "$CUPTI_VERSION" "$CUPTI_WHEEL" "$CUPTI_SHA256" manylinux_2_25_x86_64

echo "libtorch-setup: extracting the CPU libtorch into $dest ..."
rm -rf "$tmp"
mkdir -p "$tmp/lib" "$tmp/include"
python3 "$here/scripts/libtorch_wheels.py" extract "$cache/$TORCH_WHEEL" "$cache/$CUDART_WHEEL" "$cache/$CUPTI_WHEEL" "$tmp" \
    || die "extraction failed (out of disk space? the wheels themselves were verified)."
check_libtorch_dir "$tmp" || die "the torch wheel did not contain lib/libtorch_cpu.so and include/torch."
if command -v patchelf >/dev/null 2>&1; then
    patchelf --remove-needed libtorch_cuda.so "$tmp/lib/libtorch.so"
    echo "libtorch-setup: removed libtorch.so's dependency on libtorch_cuda.so (patchelf)."
fi
echo "$TORCH_VERSION+cpu" > "$tmp/build-version"
rm -rf "$dest"
mv "$tmp" "$dest"
touch "$marker"
echo "libtorch-setup: libtorch $TORCH_VERSION (CPU, $(du -sh "$dest" | cut -f1)) is ready in $dest."
