"""Peak memory of the prepare stage on an image folder larger than the memory it may use.

Writes a folder of JPEG files (smooth random colour pictures, 10 class folders), then runs
the real prepare stage on it in a child process whose address space is capped at what
its imports take plus --cap-mb. The prepared images.npy is several times that cap, so
the stage only finishes if it never holds the data set in memory.

    python bench/prepare_memory.py                      # 24,000 images, 128 px, cap 128 MB
    python bench/prepare_memory.py --images 6000 --cap-mb 1024  # how peak memory scales
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent


def write_folder(root: Path, count: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class {i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)
        picture.save(folder / f"{i:06d}.jpg", quality=85)


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(workdir: Path, cap_mb: int) -> None:
    """Import what the stage imports, cap the address space, run the stage."""
    import runpy

    import torch  # noqa: F401 - the stage imports it while validating params

    import cnnpipe.data.sources  # noqa: F401
    import cnnpipe.models  # noqa: F401

    os.chdir(workdir)
    base_rss = rss_mb("VmRSS")
    vm_size = (
        int(
            next(
                x
                for x in Path("/proc/self/status").read_text().split("\n")
                if x.startswith("VmSize:")
            ).split()[1]
        )
        * 1024
    )
    limit = vm_size + cap_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = time.perf_counter()
    sys.argv = ["prepare.py"]
    try:
        runpy.run_path(str(REPO / "stages/prepare.py"), run_name="__main__")
    except SystemExit as exc:
        if exc.code:
            raise
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "base_rss_mb": base_rss,
                "peak_rss_mb": rss_mb("VmHWM"),
                "address_space_cap_mb": cap_mb,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24000)
    parser.add_argument("--size", type=int, default=128, help="prepared image size (px)")
    parser.add_argument("--cap-mb", type=int, default=128)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cap_mb)
        return

    with tempfile.TemporaryDirectory(prefix="cnnpipe-prepare-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        write_folder(work / "images", args.images, args.size * 2)
        print(f"wrote {args.images} JPEG files in {time.perf_counter() - started:.0f} s")
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"].update(source="imagefolder", root="images", image_size=args.size, channels=3)
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        # glibc gives each thread its own 64 MB malloc arena: address space, not memory,
        # but it counts against the cap.
        env = dict(os.environ, MALLOC_ARENA_MAX="2", CI="1")
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(work), "--cap-mb", str(args.cap_mb)],
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            sys.exit(f"prepare failed under the cap:\n{result.stderr[-3000:]}")
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        prepared = (work / "data/prepared/images.npy").stat().st_size / 2**20
    grown = stats["peak_rss_mb"] - stats["base_rss_mb"]
    print(
        f"prepared {args.images} images of {args.size}x{args.size}x3: images.npy "
        f"{prepared:.0f} MB, {prepared / args.cap_mb:.1f}x the {args.cap_mb} MB cap, in "
        f"{stats['seconds']:.1f} s ({args.images / stats['seconds']:.0f} img/s)\n"
        f"peak RSS {stats['peak_rss_mb']:.0f} MB, of which {stats['base_rss_mb']:.0f} MB "
        f"imports before the stage ran: the stage grew it by {grown:.0f} MB"
    )


if __name__ == "__main__":
    main()
