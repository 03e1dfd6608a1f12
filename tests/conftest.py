import fcntl
import itertools
import os
import shutil
from pathlib import Path

import pytest

# The real servers' helpers and the clone helpers live apart from the fixtures so the
# benchmarks can use them too.
from servers import free_port, postgres_bin, postgresql, s3_endpoint  # noqa: F401
from workspace import (  # noqa: F401
    REPO,
    as_in_a_terminal,
    cli_env,
    copy_repo,
    experiments_shown,
    make_clone,
    run,
    set_params,
    threads_per_worker,
)

OUTPUT = Path(os.environ.get("CNNPIPE_TEST_OUTPUT", REPO / "test-output"))


def pytest_configure(config):
    """PyTorch in each test process (unit tests) and in every child it starts gets one
    worker's share of the cores, set before any test module imports torch. Under xdist the
    controller, which runs no test, sets it first and its workers inherit it: a worker that
    counted only itself would find the controller's whole-machine figure already there.
    An OMP_NUM_THREADS given from outside is kept."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    workers = workers or config.getoption("numprocesses", default=None) or 1
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_worker(workers)))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, worker_id) -> Path:
    """A clone where the default `dvc repro` has run once (LeNet, 30 epochs), built by the
    first pytest worker that asks for it and shared by all of them. Read it, never change
    it: a test that changes a trained pipeline works on `trained_copy`.

    System metrics are sampled every second, so that so short a training records some.
    """
    # With xdist every worker has its own basetemp inside the session's folder.
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    repo, done, failed = (
        shared / "trained" / "repo",
        shared / "trained.done",
        shared / "trained.failed",
    )
    with open(shared / "trained.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the first worker's build
        if failed.exists():
            pytest.fail(f"the shared trained pipeline failed to build:\n{failed.read_text()}")
        if not done.exists():
            try:
                make_clone(repo)
                run(["dvc", "repro"], repo, MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1")
            except BaseException as exc:
                failed.write_text(str(exc))
                raise
            done.touch()
    return repo


@pytest.fixture
def trained_copy(trained, tmp_path) -> Path:
    """A copy of the trained pipeline of this test's own, to change at will."""
    return copy_repo(trained, tmp_path / "repo")


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


@pytest.fixture
def postgres():
    """A PostgreSQL server of this test's own, with an empty database `mlflow`."""
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but PostgreSQL is missing; `make test` installs it under CI")
        pytest.skip("no PostgreSQL (apt-get install postgresql) for the team-server tests")
    with postgresql() as server:
        yield server


@pytest.fixture
def s3() -> str:
    """An S3 endpoint of this test's own (moto's server) with an empty bucket `team`."""
    with s3_endpoint("team") as url:
        yield url


def offline_env() -> dict[str, str]:
    """Variables that send every download to a loopback port nobody listens on: a machine
    without internet, for one child process. (In this process they would stick in
    urllib's cached opener and cut later tests off too.)"""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {name: closed for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    return {**env, "no_proxy": "", "NO_PROXY": ""}


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


def pytest_collection_modifyitems(config, items):
    """Hand out the long tests first, so that the workers end together: the first test on
    the shared trained pipeline (whose worker builds it); then each test that crowds the
    cores with DVC's queue workers beside one that mostly waits, so that the crowd takes
    the core the waiting one leaves idle; then the other end-to-end tests, those that
    build their own clones before those on the trained pipeline, with the other waiting
    tests spread among them (two side by side would leave a core idle); and the short
    unit tests last to fill the gaps."""
    first_trained = next((i for i in items if "trained" in i.fixturenames), None)
    crowds = [i for i in items if "crowds" in i.keywords]
    waits = [i for i in items if "waits" in i.keywords and i is not first_trained]
    chosen = {id(i) for i in [first_trained, *crowds, *waits]}
    rest = [i for i in items if id(i) not in chosen]
    e2e = [i for i in rest if "e2e" in i.keywords]
    e2e.sort(key=lambda i: "trained" in i.fixturenames)  # stable: file order within
    unit = [i for i in rest if "e2e" not in i.keywords]

    order = [first_trained] if first_trained else []
    for crowd, waiting in itertools.zip_longest(crowds, waits[: len(crowds)]):
        order += [i for i in (crowd, waiting) if i]
    spare = waits[len(crowds) :]
    every = max(1, len(e2e) // (len(spare) + 1))
    for n, item in enumerate(e2e, start=1):
        order.append(item)
        if spare and n % every == 0:
            order.append(spare.pop(0))
    items[:] = [*order, *spare, *unit]
