"""The `cnnpipe` command: look at what the pipeline produced.

cnnpipe preprocess IMG --out F.png   the uint8 image the exported model receives for IMG
cnnpipe inspect IMG   kernels, feature maps and Grad-CAM of the trained network for IMG
cnnpipe recipe NAME   one `dvc exp run` with recipes/NAME.yaml's params (and more -S)
cnnpipe study NAME    run studies/NAME.yaml as DVC experiments, report in reports/NAME/
cnnpipe tune NAME     search studies/NAME.yaml's ranges with Optuna, trials as experiments
cnnpipe ui            the MLflow UI over this project's runs, on 127.0.0.1
cnnpipe server        a team's tracking server: MLflow on PostgreSQL, artifacts in S3
cnnpipe netron [FILE] a model's graph in Netron, on 127.0.0.1 (no browser is opened)
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

from cnnpipe import paths
from cnnpipe.errors import CnnpipeError, exit_on_error


def cmd_models(args) -> None:
    from cnnpipe import models

    for name in models.registered_names():
        print(f"{name:20} {models.family(name)}")


def cmd_summary(args) -> None:
    from cnnpipe import zoo

    zoo.lookup(args.model)  # a misspelt name is refused before torch is imported
    from cnnpipe import models
    from cnnpipe.summary import report

    model = models.build(
        args.model,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        image_size=args.image_size,
        variant=args.variant,
    )
    variant = models.resolve_variant(args.variant, args.image_size)
    print(report(model, args.model, variant, args.in_channels, args.image_size), end="")


def cmd_predict(args) -> int:
    from cnnpipe.model_files import open_model
    from cnnpipe.predict import predict_files

    model = open_model(args.model)
    target = Path(args.target)
    if target.is_dir():
        paths = sorted(p for p in target.rglob("*") if p.is_file())
        if not paths:
            raise CnnpipeError(f"{target}: folder holds no files")
    else:
        paths = [target]
    results = predict_files(model, paths, args.topk)

    if target.is_dir():
        with contextlib.ExitStack() as stack:
            out = sys.stdout
            if args.csv:
                out = stack.enter_context(open(args.csv, "w", newline="", encoding="utf-8"))
            _write_csv(out, results, args.topk)
    else:
        for r in results:
            for name, prob in r.top:
                print(f"{name}\t{prob:.4f}")
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_preprocess(args) -> None:
    from PIL import Image

    from cnnpipe.files import atomic_path
    from cnnpipe.images import network_input
    from cnnpipe.model_files import open_model

    metadata = open_model(args.model).metadata
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CnnpipeError(f"--out {out}: give a .png file (a lossless copy of the pixels)")
    pixels = network_input(args.image, metadata)
    with atomic_path(out) as tmp:
        Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(tmp, "PNG")
    side = metadata.resize_size  # Metadata fills it in from image_size when not recorded
    print(
        f"{out}: {pixels.shape[1]}x{pixels.shape[0]}, {pixels.shape[2]} channel(s): "
        f"{metadata.resize} to {side}x{side}, then the centre "
        f"{metadata.image_size}x{metadata.image_size}"
    )


def _write_csv(out, results, topk: int) -> None:
    import csv

    writer = csv.writer(out)
    header = ["path"]
    for k in range(1, topk + 1):
        header += [f"class_{k}", f"prob_{k}"]
    writer.writerow([*header, "error"])
    for r in results:
        cells = [r.path]
        for k in range(topk):
            cells += [r.top[k][0], f"{r.top[k][1]:.6f}"] if k < len(r.top) else ["", ""]
        writer.writerow([*cells, r.error])


def cmd_inspect(args) -> None:
    import torch

    from cnnpipe.checkpoint import load_model
    from cnnpipe.classifier import shipped
    from cnnpipe.images import network_input
    from cnnpipe.inspection import Shown, write_views

    weights = Path(args.model)
    network, spec = load_model(weights, weights.with_name("model.json"))
    model = shipped(network, spec)
    pixels = network_input(args.image, spec)[None].copy()
    with torch.no_grad():
        probs = model(torch.from_numpy(pixels))[0]
    pred = int(probs.argmax())
    name = Path(args.image).name
    title = f"{name}\npred {spec.classes[pred]} ({float(probs[pred]):.2f})"
    folder = Path(args.out or f"inspect-{Path(args.image).stem}")
    views = write_views(
        model, Shown(pixels, [name]), Shown(pixels, [title]), [pred], folder, args.layer
    )
    for path in views:
        print(path)


def cmd_study(args) -> None:
    from cnnpipe.files import project_root
    from cnnpipe.studies.run import run_study

    folder = run_study(args.name, args.jobs, timeout=args.timeout)
    for path in sorted(folder.iterdir()):
        print(path.relative_to(project_root()))


def cmd_recipe(args) -> int:
    from cnnpipe.studies.recipes import run_recipe

    return run_recipe(args.name, args.targets, args.set or [], dry_run=args.dry_run)


def cmd_tune(args) -> None:
    from cnnpipe.files import project_root
    from cnnpipe.studies.tune import run_tune

    folder = run_tune(args.name, args.trials, args.jobs, timeout=args.timeout)
    for path in sorted(folder.iterdir()):
        print(path.relative_to(project_root()))


def cmd_ui(args) -> None:
    from cnnpipe.server import run_mlflow
    from cnnpipe.tracking.store import tracking_uri

    uri = tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", args.host, "--port", str(args.port)]
    url = f"http://{args.host}:{args.port}"
    return run_mlflow(
        command, url, "the MLflow UI", f"MLflow UI for {uri} at {url} (Ctrl-C stops it)"
    )


def cmd_server(args) -> None:
    from cnnpipe.server import serve

    stores = (args.backend_store_uri, args.artifacts_destination)
    return serve(*stores, args.host, args.port, args.workers)


def cmd_netron(args) -> None:
    import logging
    import signal
    import threading

    path = Path(args.file)
    if not path.is_file():
        raise CnnpipeError(f"{path}: no such model file; run `dvc repro` to export one")
    # Ctrl-C only sets a flag, so it stops the server wherever it lands: during the import,
    # inside netron.start() once the server thread runs, or while serving.
    ctrl_c = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: ctrl_c.set())
    import netron

    if ctrl_c.is_set():
        return
    # The banner below is the one address line.
    logging.getLogger("netron.server").setLevel(logging.WARNING)
    host, port = netron.start(str(path), address=(args.host, args.port), browse=False)
    print(f"Serving {path} at http://{host}:{port} (Ctrl-C stops it)", flush=True)
    while not ctrl_c.wait(0.2):
        pass
    netron.stop()
    # A connection a browser opened and never used (Chromium opens spare ones) keeps one
    # of netron's request threads reading; they are not daemon threads, so the interpreter
    # would wait at exit until the browser hangs up. The server is stopped: leave now.
    sys.stdout.flush()
    os._exit(0)


def _model_file_argument(parser) -> None:
    """--model for the commands that open any exported model file (model_files.open_model)."""
    parser.add_argument(
        "--model",
        default=paths.ONNX,
        help="a .onnx, TorchScript .pt or checkpoint .pth file (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnpipe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the registered networks").set_defaults(run=cmd_models)

    summary = sub.add_parser("summary", help="a network layer by layer")
    summary.add_argument("--model", required=True, help="a name from `cnnpipe models`")
    summary.add_argument("--image-size", type=int, default=32, help="default: %(default)s")
    summary.add_argument("--in-channels", type=int, default=1, help="default: %(default)s")
    summary.add_argument("--num-classes", type=int, default=10, help="default: %(default)s")
    summary.add_argument("--variant", default="auto", choices=["auto", "small", "imagenet"])
    summary.set_defaults(run=cmd_summary)

    predict = sub.add_parser("predict", help="classify an image or a folder of images")
    predict.add_argument("target", help="an image file, or a folder (gives one CSV row per file)")
    _model_file_argument(predict)
    predict.add_argument("--topk", type=int, default=3, help="classes to show (default: 3)")
    predict.add_argument("--csv", help="for a folder: write the CSV here instead of stdout")
    predict.set_defaults(run=cmd_predict)

    pre = sub.add_parser("preprocess", help="write the image a model receives for a picture")
    pre.add_argument("image", help="an image file")
    _model_file_argument(pre)
    pre.add_argument("--out", required=True, help="the PNG to write")
    pre.set_defaults(run=cmd_preprocess)

    look = sub.add_parser("inspect", help="kernels, feature maps and Grad-CAM for one image")
    look.add_argument("image", help="an image file")
    look.add_argument(
        "--model",
        default=paths.BEST_WEIGHTS,
        help="a checkpoint, model.json beside it (default: %(default)s)",
    )
    look.add_argument("--out", help="folder for the PNGs (default: inspect-<image name>)")
    look.add_argument("--layer", default="auto", help="Grad-CAM's layer (default: the last stage)")
    look.set_defaults(run=cmd_inspect)

    study = sub.add_parser("study", help="run studies/NAME.yaml's grid, write reports/NAME/")
    study.add_argument("name", help="a study under studies/, e.g. learning_rate")
    study.add_argument("--jobs", type=int, default=2, help="parallel workers (default: 2)")
    study.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the queue before giving up, naming what is still waiting",
    )
    study.set_defaults(run=cmd_study)

    recipe = sub.add_parser("recipe", help="dvc exp run with recipes/NAME.yaml's params")
    recipe.add_argument("name", help="a recipe under recipes/, e.g. photos")
    recipe.add_argument("targets", nargs="*", help="stages to run up to (default: all)")
    recipe.add_argument(
        "-S", "--set", action="append", metavar="KEY=VALUE", help="a param on top (repeatable)"
    )
    recipe.add_argument("--dry-run", action="store_true", help="check and print the command")
    recipe.set_defaults(run=cmd_recipe)

    tune = sub.add_parser("tune", help="search studies/NAME.yaml with Optuna, report in reports/")
    tune.add_argument("name", help="a search under studies/, e.g. tune_lenet")
    tune.add_argument("--trials", type=int, help="trials to finish (default: the file's trials)")
    tune.add_argument("--jobs", type=int, default=2, help="trials at once (default: 2)")
    tune.add_argument(
        "--timeout", type=float, default=None, help="seconds to search before giving up"
    )
    tune.set_defaults(run=cmd_tune)

    ui = sub.add_parser("ui", help="serve the MLflow UI over this project's runs")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    ui.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    ui.set_defaults(run=cmd_ui)

    team = sub.add_parser(
        "server", help="a team's MLflow server: runs in PostgreSQL, artifacts in S3"
    )
    team.add_argument(
        "--backend-store-uri",
        help="the database, e.g. postgresql://mlflow@db:5432/mlflow (default: "
        "$MLFLOW_BACKEND_STORE_URI)",
    )
    team.add_argument(
        "--artifacts-destination",
        help="where artifacts go, e.g. s3://team-bucket/mlflow (default: "
        "$MLFLOW_ARTIFACTS_DESTINATION); set MLFLOW_S3_ENDPOINT_URL for MinIO, Ceph or moto",
    )
    team.add_argument("--host", default="0.0.0.0", help="address to bind (default: %(default)s)")
    team.add_argument("--port", type=int, default=5000, help="port (default: %(default)s)")
    team.add_argument("--workers", type=int, default=4, help="server processes (default: 4)")
    team.set_defaults(run=cmd_server)

    net = sub.add_parser("netron", help="serve a model file in Netron")
    net.add_argument("file", nargs="?", default=paths.ONNX, help="default: %(default)s")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    net.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    net.set_defaults(run=cmd_netron)
    return parser


@exit_on_error
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    code = args.run(args)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
