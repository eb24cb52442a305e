#!/usr/bin/env bash
# Obtains a CPU libtorch 2.13.0 (the version tch 0.26 targets) into ./libtorch, once.
#
# The official libtorch archives are often unreachable; PyPI is not. The torch
# wheel on PyPI carries a complete libtorch (lib/ and include/). We keep only the
# CPU part of it, plus the two small CUDA runtime stubs that libtorch_cpu.so is
# linked against (they load fine without any GPU), and drop libtorch.so's need for
# libtorch_cuda.so so that nothing asks for the 2.5 GB of CUDA libraries.
#
#   ./libtorch-setup.sh            set up ./libtorch (does nothing if already done)
#   LIBTORCH=/path ./libtorch-setup.sh   use an existing libtorch 2.13 instead
#   INITLAB_CACHE=/dir ...         where downloads are cached (~/.cache/initlab)
set -euo pipefail

TORCH_VERSION=2.13.0
CUDART_VERSION=13.0.96
CUPTI_VERSION=13.0.85
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest="$here/libtorch"
cache="${INITLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/initlab}/wheels"
marker="$dest/.initlab-complete"

die() {
    echo "libtorch-setup: error: $1" >&2
    cat >&2 <<EOF

initlab needs libtorch $TORCH_VERSION (CPU). Ways to provide it:
  * run this script on a machine that reaches PyPI (pip must be installed), or
    copy ~/.cache/initlab/wheels from such a machine and rerun it;
  * or point LIBTORCH at an existing libtorch $TORCH_VERSION, e.g.
        LIBTORCH=/opt/libtorch ./libtorch-setup.sh
    (a directory with lib/libtorch_cpu.so and include/), or at an installed
    PyTorch $TORCH_VERSION:
        LIBTORCH=\$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))') ./libtorch-setup.sh
EOF
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
    Linux-x86_64) platform=manylinux_2_28_x86_64 ;;
    *) die "no CPU libtorch wheel is fetched automatically for $(uname -s) $(uname -m) (only Linux x86_64)." ;;
esac
command -v python3 >/dev/null 2>&1 || die "python3 is not installed (it runs pip to fetch the torch wheel)."
python3 -m pip --version >/dev/null 2>&1 || die "pip is not available (python3 -m pip failed); install it, e.g. apt-get install python3-pip."

mkdir -p "$cache"
fetch() { # requirement -> wheel in the cache (downloaded only if absent)
    local name=$1 version=$2 glob=$3 plat=$4
    if ! ls "$cache"/$glob >/dev/null 2>&1; then
        echo "libtorch-setup: downloading $name==$version from PyPI into $cache ..."
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version 3.11 --platform "$plat" \
            --dest "$cache" "$name==$version" \
            || die "could not download $name==$version with pip (offline? no PyPI access?)."
    else
        echo "libtorch-setup: using cached $(basename "$(ls "$cache"/$glob | head -n1)")"
    fi
    ls "$cache"/$glob | head -n1
}
torch_whl=$(fetch torch "$TORCH_VERSION" "torch-$TORCH_VERSION-cp311-*.whl" "$platform" | tail -n1)
cudart_whl=$(fetch nvidia-cuda-runtime "$CUDART_VERSION" "nvidia_cuda_runtime-$CUDART_VERSION-*.whl" manylinux2014_x86_64 | tail -n1)
cupti_whl=$(fetch nvidia-cuda-cupti "$CUPTI_VERSION" "nvidia_cuda_cupti-$CUPTI_VERSION-*.whl" manylinux_2_25_x86_64 | tail -n1)

echo "libtorch-setup: extracting the CPU libtorch into $dest ..."
tmp="$dest.partial"
rm -rf "$tmp"
mkdir -p "$tmp/lib" "$tmp/include"
python3 - "$torch_whl" "$cudart_whl" "$cupti_whl" "$tmp" <<'PY' || die "extraction failed (corrupt download? delete the wheels in the cache and rerun)."
import os, shutil, sys, zipfile
torch_whl, cudart_whl, cupti_whl, out = sys.argv[1:]
keep_libs = ("libtorch_cpu.so", "libc10.so", "libtorch.so", "libgomp")
def copy(zf, member, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zf.open(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
with zipfile.ZipFile(torch_whl) as zf:
    for m in zf.namelist():
        if m.startswith("torch/include/") and not m.endswith("/"):
            copy(zf, m, os.path.join(out, "include", m[len("torch/include/"):]))
        elif m.startswith("torch/lib/") and os.path.basename(m).startswith(keep_libs):
            copy(zf, m, os.path.join(out, "lib", os.path.basename(m)))
for whl, want in ((cudart_whl, "libcudart.so.13"), (cupti_whl, "libcupti.so.13")):
    with zipfile.ZipFile(whl) as zf:
        hits = [m for m in zf.namelist() if os.path.basename(m) == want]
        if not hits:
            sys.exit(f"{want} not found in {whl}")
        copy(zf, hits[0], os.path.join(out, "lib", want))
PY
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
