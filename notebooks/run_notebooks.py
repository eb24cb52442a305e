#!/usr/bin/env python3
"""Execute initlab's figure notebooks headless against an outputs directory.

    python notebooks/run_notebooks.py                      # ../outputs relative to this folder
    python notebooks/run_notebooks.py --outputs outputs --save /tmp/executed
    python notebooks/run_notebooks.py --check-only         # only check the notebooks carry no outputs

The committed .ipynb files are never modified: each is read, executed in memory with nbclient
(the outputs directory reaches it through the environment variable INITLAB_OUTPUTS), and, with
--save DIR, the executed copy is written to DIR. Before executing, every notebook is checked to be
committed clean (no outputs, no execution counts). The exit status is non-zero if any notebook is
not clean or fails to execute; the failing notebooks are named.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
except ImportError as exc:
    # Only the project's .venv is sure to have the packages; say how to get there
    # instead of a traceback. --help still works without them.
    if __name__ == "__main__" and not {"-h", "--help"} & set(sys.argv[1:]):
        sys.exit(f"run_notebooks.py: error: {exc.name or exc} is not installed for {sys.executable}. "
                 f"Run it with the project's environment, which ./run-tests.sh makes and fills "
                 f"(.venv/bin/python notebooks/run_notebooks.py ...), or install "
                 f"notebooks/requirements.txt into this Python's virtual environment.")


def unclean_cells(nb) -> list[str]:
    """Describe every code cell that carries outputs or an execution count."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i} has execution_count {cell['execution_count']}")
    return problems


def run_one(path: Path, outputs: Path, timeout: int, kernel: str, save: Path | None) -> str | None:
    """Execute one notebook in memory; return None on success or a short error description."""
    original = nbformat.read(path, as_version=4)
    nb = copy.deepcopy(original)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel,
        allow_errors=False,
        record_timing=False,
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # quiet the kernel's own start-up warnings
        resources={"metadata": {"path": str(path.parent)}},  # kernel cwd: the notebooks folder
    )
    error = None
    try:
        client.execute(env={**os.environ, "INITLAB_OUTPUTS": str(outputs), "MPLBACKEND": "Agg"})
    except CellExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}" if getattr(exc, "ename", None) else str(exc)
    except (CellTimeoutError, DeadKernelError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, save / path.name)
    return error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to run (default: every *.ipynb in this folder)")
    parser.add_argument("--outputs", type=Path, default=HERE.parent / "outputs",
                        help="initlab outputs directory (default: ../outputs relative to this folder)")
    parser.add_argument("--save", type=Path, default=None, help="write executed copies into this directory")
    parser.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds (default 900)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    parser.add_argument("--check-only", action="store_true",
                        help="only check that the notebooks are committed without outputs")
    args = parser.parse_args()

    notebooks = [p.resolve() for p in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    if not notebooks:
        print(f"no notebooks found in {HERE}", file=sys.stderr)
        return 2
    outputs = args.outputs.resolve()
    save = args.save.resolve() if args.save is not None else None
    if save is not None and save == HERE:
        print("--save must not be the notebooks folder (the committed notebooks stay unexecuted)", file=sys.stderr)
        return 2

    failures: list[tuple[str, str]] = []
    for path in notebooks:
        problems = unclean_cells(nbformat.read(path, as_version=4))
        if problems:
            failures.append((path.name, "committed with outputs: " + "; ".join(problems)))
    if args.check_only:
        for name, why in failures:
            print(f"NOT CLEAN {name}: {why}")
        print(f"{len(notebooks) - len(failures)}/{len(notebooks)} notebooks clean")
        return 1 if failures else 0

    print(f"outputs directory: {outputs}")
    for path in notebooks:
        start = time.monotonic()
        print(f"running {path.name} ...", flush=True)
        error = run_one(path, outputs, args.timeout, args.kernel, save)
        took = time.monotonic() - start
        if error is None:
            print(f"  ok ({took:.1f} s)")
        else:
            print(f"  FAILED ({took:.1f} s): {error.strip().splitlines()[-1] if error.strip() else error}")
            failures.append((path.name, error))
    if save is not None:
        print(f"executed copies written to {save}")

    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for name, why in failures:
            print(f"--- {name}\n{why.strip()}", file=sys.stderr)
        return 1
    print(f"all {len(notebooks)} notebooks ran; figures in {outputs / 'notebook-figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
