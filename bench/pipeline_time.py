"""How long the default pipeline takes, stage by stage, against one plain script.

In a temporary clone of this repository (its committed and uncommitted files, never its
outputs) the pipeline runs once to fill DVC's cache and the MLflow store. Then, alternating
so that a busy moment of the machine hits both alike:

  - `dvc repro --force` (every stage, as a sweep's first experiment pays);
  - bench/plain_pipeline.py, the same job in one process;
  - each stage's command on its own, with Python's -X importtime, for the per-stage table:
    wall seconds and how many of them went to imports.

Finally `dvc exp run -S lr=0.01` times what one experiment of a sweep costs.

    python bench/pipeline_time.py --pairs 3
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# The tests' throwaway-clone helpers (tests/workspace.py needs no pytest).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from workspace import REPO, cli_env, make_clone  # noqa: E402


def timed(cmd, cwd, **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=cli_env(), capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done


def import_seconds(stderr: str) -> float:
    """Sum of the top-level imports' cumulative times in -X importtime's report."""
    total = 0
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match and not match.group(2).startswith(" "):
            total += int(match.group(1))
    return total / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="timed repro/script pairs (>= 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cnnpipe-bench-") as tmp:
        repo = make_clone(Path(tmp) / "repo")
        stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
        plain = [sys.executable, str(REPO / "bench/plain_pipeline.py"), "--out", f"{tmp}/plain"]
        timed(["dvc", "repro"], repo)  # fills the cache and creates the MLflow store
        timed(plain, repo)

        repro, script, per_stage = [], [], {name: [] for name in stages}
        for pair in range(args.pairs):
            repro.append(timed(["dvc", "repro", "--force"], repo)[0])
            script.append(timed(plain, repo)[0])
            for name, stage in stages.items():
                seconds, done = timed(
                    [sys.executable, "-X", "importtime", *stage["cmd"].split()[1:]], repo
                )
                per_stage[name].append((seconds, import_seconds(done.stderr)))
            print(
                f"pair {pair + 1}: dvc repro --force {repro[-1]:.1f} s, script {script[-1]:.1f} s",
                flush=True,
            )
        experiment = timed(["dvc", "exp", "run", "-S", "lr=0.01"], repo)[0]

    print("\n| stage | wall s | of which imports s |\n| --- | ---: | ---: |")
    for name, runs in per_stage.items():
        wall = statistics.median(r[0] for r in runs)
        imports = statistics.median(r[1] for r in runs)
        print(f"| {name} | {wall:.1f} | {imports:.1f} |")
    total = sum(statistics.median(r[0] for r in runs) for runs in per_stage.values())
    print(f"| all stages, one process each | {total:.1f} | |")
    ratios = [r / s for r, s in zip(repro, script, strict=True)]
    result = {
        "dvc_repro_force_s": round(statistics.median(repro), 1),
        "plain_script_s": round(statistics.median(script), 1),
        "ratio_median": round(statistics.median(ratios), 2),
        "dvc_exp_run_lr_s": round(experiment, 1),
        "pairs": args.pairs,
    }
    print("\n" + json.dumps(result))


if __name__ == "__main__":
    main()
