"""The locked environment a result was produced in: requirements.lock at the project's
root pins every installed package. Runs carry its hash and the file; logged models take
their requirements from its pins."""

import hashlib
from pathlib import Path

LOCK_FILE = Path("requirements.lock")


def lock_hash(path: Path = LOCK_FILE) -> str | None:
    """sha256 of the lock file, or None where there is none (an installed copy of cnnpipe
    used outside its repository)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def pins(*names: str, path: Path = LOCK_FILE) -> list[str]:
    """The lock's `name==version` lines for `names`; a name it does not pin is listed bare."""
    locked = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, version = line.partition("==")
            if sep and not line.startswith("#"):
                locked[_normal(name)] = f"{name.strip()}=={version.strip()}"
    return [locked.get(_normal(n), n) for n in names]


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-")
