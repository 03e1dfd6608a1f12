"""What links a run to its code, environment and data: the git commit and whether the
tree held changes, the lock file's hash, the DVC experiment and its baseline, the data's
hashes. Every function takes the repository folder it describes."""

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

from cnnpipe import paths
from cnnpipe.environment import lock_hash

DATA_DIRS = (paths.PREPARED, paths.SPLIT)


def run_tags(repo: Path) -> dict[str, str]:
    tags = {}
    if locked := lock_hash():
        tags["env.lock"] = f"sha256:{locked}"
    commit = _git(repo, "rev-parse", "HEAD")
    if commit:
        tags["git.commit"] = commit
        tags["git.dirty"] = str(bool(changed_sources(repo))).lower()
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"), ("DVC_EXP_BASELINE_REV", "dvc.baseline")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    for name, digest in data_hashes(repo).items():
        tags[f"data.{Path(name).name}"] = digest
    return tags


def changed_sources(repo: Path) -> list[str]:
    """Tracked files that differ from the commit, leaving out what the pipeline itself
    writes (dvc.lock and the outputs dvc.yaml declares): DVC deletes a stage's committed
    metrics before the stage runs, which alone is no change to the code or params."""
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "-z")
    changed = [entry[3:] for entry in (status or "").split("\0") if entry[3:]]
    outputs = pipeline_outputs(repo)
    return [path for path in changed if path not in outputs]


def pipeline_outputs(repo: Path) -> set[str]:
    """dvc.lock and every path that dvc.yaml lists under a stage's outs, metrics or plots."""
    spec = _load_yaml(repo / "dvc.yaml") if (repo / "dvc.yaml").exists() else {}
    outputs = {"dvc.lock"}
    for stage in (spec or {}).get("stages", {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                outputs.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return outputs


def data_hashes(repo: Path) -> dict[str, str]:
    """Each data folder's hash as dvc.lock records it ("md5:<hash>.dir") when it lists the
    folder as an output, else the sha256 of its files' names and bytes."""
    lock = repo / "dvc.lock"
    recorded = {}
    if lock.exists():
        for stage in (_load_yaml(lock) or {}).get("stages", {}).values():
            for out in stage.get("outs", []):
                if out.get("path") in DATA_DIRS and out.get("md5"):
                    recorded[out["path"]] = f"md5:{out['md5']}"
    return {folder: recorded.get(folder) or _files_hash(repo / folder) for folder in DATA_DIRS}


def _files_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _load_yaml(path: Path):
    # dvc.lock lists every module each stage imports (over a thousand lines): libyaml reads
    # it in a tenth of the pure-Python parser's time, on every tracked stage's start.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)


def _git(repo: Path, *args) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip("\n")
