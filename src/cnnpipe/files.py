"""Atomic writes: every output appears whole under its final name, or not at all."""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


def project_root() -> Path:
    """The repository's root. DVC runs a queued experiment in a temporary copy of the
    repository, but sets DVC_ROOT to the main one: what is shared (the MLflow store, an
    image folder outside git) is found there."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def resolve_path(path: str | os.PathLike) -> Path:
    """A path from params.yaml: a relative one is looked up in the working directory,
    then at the project root (a queued experiment runs in a temporary copy that holds
    only what git and DVC track)."""
    found = Path(path).expanduser()
    if not found.is_absolute() and not found.exists():
        found = project_root() / found
    return found


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a path with the target's own name in a private folder beside it; move it into
    place only if the block succeeds.

    The name is the final one because writers record it: torch.save names its archive's
    inner folder after the file, so a temporary name would change the bytes from run to run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield folder / path.name
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory beside `path`; swap it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    # mkdtemp makes a private (0700) folder; the output gets the user's usual permissions.
    tmp.chmod(0o777 & ~current_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0o022)  # reading it means setting it; put it straight back
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """Rows of equal keys -> CSV with a header, the format DVC plots read."""
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
