import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def cli_env(**extra) -> dict[str, str]:
    """Environment for the real CLIs: this venv first on PATH, no outside MLflow server."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        GIT_AUTHOR_NAME="cnnpipe tests",
        GIT_AUTHOR_EMAIL="tests@cnnpipe.invalid",
        GIT_COMMITTER_NAME="cnnpipe tests",
        GIT_COMMITTER_EMAIL="tests@cnnpipe.invalid",
    )
    env.update(extra)
    return env


def run(cmd, cwd, check=True, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, cwd=cwd, env=cli_env(**env), capture_output=True, text=True, shell=isinstance(cmd, str)
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def make_clone(dest: Path) -> Path:
    """A fresh repository holding the working tree's files (committed or not), never its outputs.

    Its stages import cnnpipe from this checkout's editable install: the same code.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    # dvc.lock records this checkout's own results; a fresh clone of main has none.
    for name in filter(lambda n: n and n != "dvc.lock", listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "clone for tests"], dest)
    return dest


def set_params(repo, **values):
    """Edit params.yaml in a clone; `section__key=value` reaches nested keys."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, value in values.items():
        *path, last = key.split("__")
        section = params
        for part in path:
            section = section[part]
        section[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


OUTPUT = Path(os.environ.get("CNNPIPE_TEST_OUTPUT", REPO / "test-output"))


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where browser tests leave their screenshots for people to look at."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium driven by Playwright (which downloads no browser)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is missing; `make test` installs it under CI")
        pytest.skip("no chromium on PATH (apt-get install chromium) for the browser tests")
    from playwright.sync_api import sync_playwright

    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=flags)
        yield chromium
        chromium.close()


def offline_env() -> dict[str, str]:
    """Variables that send every download to a loopback port nobody listens on: a machine
    without internet, for one child process. (In this process they would stick in
    urllib's cached opener and cut later tests off too.)"""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {name: closed for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    return {**env, "no_proxy": "", "NO_PROXY": ""}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Digits 0..9 as class folders whose names have spaces and non-ASCII characters.
DIGIT_CLASSES = ["zero", "one", "two 2", "three", "four", "five", "six", "seven", "八", "向日葵"]
BROKEN = {"empty.png": b"", "notes.txt": b"not a picture", "cut.jpg": None}


def write_digit_folder(root: Path, per_class: int | None = None, broken=True) -> dict:
    """scikit-learn's digits as an image folder: PNG and JPEG, grey and RGB, at 16, 24 and
    32 px, plus (with `broken`) an empty file, a text file and a truncated JPEG in class
    'one', and a hidden file to ignore. Returns {relative path: class name} of the images."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    written, taken = {}, [0] * 10
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if per_class is not None and taken[label] >= per_class:
            continue
        taken[label] += 1
        size = 8 * (2 + i % 3)
        picture = Image.fromarray((image / 16 * 255).astype("uint8")).resize((size, size))
        if i % 2:
            picture = picture.convert("RGB")
        name = f"{DIGIT_CLASSES[label]}/{i:04d}.{'png' if i % 4 < 2 else 'jpg'}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        picture.save(root / name)
        written[name] = DIGIT_CLASSES[label]
    if broken:
        jpeg = next(root / n for n in written if n.endswith(".jpg"))
        for name, content in BROKEN.items():
            (root / "one" / name).write_bytes(
                jpeg.read_bytes()[:200] if content is None else content
            )
        (root / "one" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return written
