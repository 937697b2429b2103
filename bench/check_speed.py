"""How fast the checker grades one workspace, on one core, with the interpreter already started.

    python -m bench.check_speed [--workspace PATH] [--repeat 30]

Prints the median time of `checker.check_all` and the workspaces per second it means (target: at
least 20 on one core) for files the checker has never seen (every parsed table forgotten before
each run), then for split files it has seen (a batch worker shares tables by content), the
median per check, and, side by side in the same run, the ratio of
reading the store with MLflow's own client instead of read-only sqlite3 (why the checker never
imports MLflow). Without --workspace it builds a foundation workspace from the real OULAD data;
point it at `build/demo/workspace` (after `make demo`) to time every stage check.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a workspace to grade (default: build one)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    import checker
    from checker import table

    with tempfile.TemporaryDirectory() as tmp:
        workspace = args.workspace
        if workspace is None:
            from tests.helpers.workspace import build_workspace

            workspace = build_workspace(Path(tmp) / "workspace")
        checker.check_all(workspace)  # warm: imports, schema compilation

        def first_sight() -> None:  # no table known: as a learner's self-check, or new bytes
            table.clear_cache()
            checker.check_all(workspace)

        total = median_seconds(first_sight, args.repeat)
        again = median_seconds(lambda: checker.check_all(workspace), args.repeat)
        report = checker.check_all(workspace)
        print(f"workspace: {workspace}  ({report.score}/{report.max_score})")
        print(
            f"check_all median, files never seen: {total * 1000:7.1f} ms  -> "
            f"{1 / total:6.1f} workspaces/s on one core"
        )
        print(
            f"check_all median, same split bytes seen before (a cohort): {again * 1000:7.1f} ms  -> "
            f"{1 / again:6.1f} workspaces/s; ratio {total / again:.2f}x"
        )
        for name, check in checker.CHECKS.items():

            def one(c=check) -> None:
                table.clear_cache()
                c(workspace)

            seconds = median_seconds(one, max(5, args.repeat // 3))
            print(f"  {name:<22} {seconds * 1000:7.1f} ms (files never seen)")

        ours = median_seconds(lambda: checker.check("metrics_logged", workspace), args.repeat)
        import mlflow

        def through_mlflow() -> None:
            client = mlflow.MlflowClient(
                tracking_uri=f"sqlite:///{Path(workspace).resolve()}/mlflow.db"
            )
            for exp in client.search_experiments():
                for run in client.search_runs([exp.experiment_id]):
                    for key in run.data.metrics:
                        client.get_metric_history(run.info.run_id, key)

        through_mlflow()
        theirs = median_seconds(through_mlflow, max(5, args.repeat // 3))
        print(
            f"store read: sqlite3 read-only {ours * 1000:.1f} ms vs MlflowClient {theirs * 1000:.1f} ms "
            f"-> MlflowClient/ours = {theirs / ours:.1f}x (and MlflowClient may migrate the file)"
        )


if __name__ == "__main__":
    main()
