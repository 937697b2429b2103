"""The cost of notebooks: the stage chain as notebooks (papermill) vs as plain Python scripts.

    python -m bench.chain_speed [--full] [--repeat 1]

(a) runs the stage solutions with `checker.chain.run_chain` (one process, papermill, the next
kernel started while the current notebook runs); (b) runs the same notebooks' code, parameterized
the same way, as one `python script.py` per notebook (the one cell magic, `%%writefile`, becomes
a file write; no kernel, no messaging, no rendered outputs). Both at the CI
sample size into fresh workspaces, in the same run, and the ratio (a)/(b) is printed.
Goal (issue 3): (a)/(b) <= 1.15.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checker.chain import CI_PARAMETERS, DATA_DIR, run_chain, stage_notebooks

PRELUDE = "from IPython.display import display  # noqa\n"


def to_python(source: str) -> str:
    """A code cell as plain Python: `%%writefile PATH` becomes a write, line magics are dropped."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%writefile"):
        target = lines[0].split(maxsplit=1)[1].strip().strip('"')
        body = "\n".join(lines[1:]) + "\n"
        return f"from pathlib import Path\nPath(f{target!r}).write_text({body!r})\n"
    return "\n".join(line for line in lines if not line.lstrip().startswith("%")) + "\n"


def export_scripts(notebooks: list[Path], workspace: Path, params: dict, out: Path) -> list[Path]:
    """Parameterize each notebook as papermill would, then write its code cells as a script."""
    import nbformat
    import papermill as pm

    scripts = []
    for notebook in notebooks:
        prepared = out / f"prepared-{notebook.name}"
        pm.execute_notebook(
            str(notebook),
            str(prepared),
            parameters={"WORKSPACE": str(workspace), "DATA_DIR": str(DATA_DIR)} | params,
            prepare_only=True,
            progress_bar=False,
        )
        cells = nbformat.read(prepared, as_version=4).cells
        code = "\n".join(to_python(c.source) for c in cells if c.cell_type == "code")
        script = out / (notebook.stem + ".py")
        script.write_text(PRELUDE + code, encoding="utf-8")
        scripts.append(script)
    return scripts


def run_scripts(scripts: list[Path], cwd: Path) -> float:
    env = os.environ | {"MPLBACKEND": "Agg", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    start = time.perf_counter()
    for script in scripts:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{script.name} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", action="store_true", help="all data and epochs, not the CI sample"
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    params = {} if args.full else CI_PARAMETERS
    notebooks = [p for p in stage_notebooks() if p.name[:2] <= "07"]
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            scripts = export_scripts(notebooks, root / "ws-b", params, root)
            b = run_scripts(scripts, notebooks[0].parent)
            start = time.perf_counter()
            runs = run_chain(
                notebooks, root / "ws-a", root / "executed", params, log=lambda _: None
            )
            a = time.perf_counter() - start
            failed = [r for r in runs if r.error]
            if failed:
                raise SystemExit(f"(a) failed: {failed[0].notebook}: {failed[0].error}")
            print(
                f"run {i + 1}: (a) notebooks {a:6.1f} s   (b) scripts {b:6.1f} s   (a)/(b) = {a / b:.2f}"
            )
            for r in runs:
                print(f"    {r.notebook:<36} {r.seconds:6.1f} s")


if __name__ == "__main__":
    main()
