"""What `tracking.system_metrics: true` costs the train stage.

In a temporary clone (prepare and split run once), the train stage runs alternately
with MLflow's system metrics off and on, so that a busy moment of the machine hits both
alike; the medians are compared.

    python bench/system_metrics.py --pairs 3
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The tests' throwaway-clone helpers (tests/workspace.py needs no pytest).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from workspace import cli_env, make_clone, run, set_params  # noqa: E402


def train_seconds(repo: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "stages/train.py"], cwd=repo, env=cli_env(), capture_output=True
    )
    if done.returncode != 0:
        sys.exit(done.stderr.decode()[-2000:])
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_clone(Path(tmp) / "repo")
        run(["dvc", "repro", "split"], repo)
        times = {False: [], True: []}
        for _ in range(args.pairs):
            for on in (False, True):
                set_params(repo, tracking__system_metrics=on)
                times[on].append(train_seconds(repo))
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"train stage, system metrics off: {off:.1f} s, on: {on:.1f} s (median of {args.pairs})")
    print(f"difference: {on - off:+.1f} s ({(on - off) / off:+.0%})")


if __name__ == "__main__":
    main()
