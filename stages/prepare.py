"""Stage 1: turn the configured data source into the prepared format under data/prepared/."""

import sys

from tqdm import tqdm

from cnnpipe import paths
from cnnpipe.config import load_params
from cnnpipe.data.prepared import prepared_writer
from cnnpipe.data.sources import open_source
from cnnpipe.errors import CnnpipeError, exit_on_error
from cnnpipe.files import write_json
from cnnpipe.progress import quiet

SHOWN = 5  # unusable files named in the one-line error under on_bad_file: fail


@exit_on_error
def main():
    params = load_params()
    cfg = params.data
    source = open_source(cfg)

    with prepared_writer(paths.PREPARED, source.classes) as out:
        bar = tqdm(total=source.total, desc="prepare", unit="img", disable=quiet())
        try:
            for images, labels in source.chunks:
                out.append(images, labels)
                bar.update(len(images))
        finally:
            bar.close()
            for bad in source.bad_files:
                print(f"unusable: {bad['path']}: {bad['reason']}", file=sys.stderr)
        if source.bad_files and cfg.on_bad_file == "fail":
            named = "; ".join(f"{b['path']}: {b['reason']}" for b in source.bad_files[:SHOWN])
            more = len(source.bad_files) - SHOWN
            raise CnnpipeError(
                f"{len(source.bad_files)} unusable file(s) in {cfg.root} ({named}"
                f"{f'; and {more} more' if more > 0 else ''}); remove them or set "
                "data.on_bad_file: skip"
            )
        out.report = {
            "images_per_class": out.class_counts(),
            "bad_files": source.bad_files,
        }
    summary = {"images": out.images.count, "bad_files": len(source.bad_files)}
    write_json(paths.PREPARE_METRICS, summary)
    skipped = f", skipped {len(source.bad_files)} unusable file(s)" if source.bad_files else ""
    print(
        f"prepared {out.images.count} images of {out.images.shape} in "
        f"{len(source.classes)} classes{skipped}"
    )


if __name__ == "__main__":
    main()
