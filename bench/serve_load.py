"""`mlflow models serve` of the pipeline's classifier under load: concurrent clients each
sending requests of 1 to 32 test images; every answer is checked against ONNX Runtime on
the same pixels (what `cnnpipe predict` runs), and the latencies and images/s reported.

Run it in a project where `dvc repro` has run (the classifier logged to MLflow):

    python bench/serve_load.py                         # 8 clients x 100 requests
    python bench/serve_load.py --clients 4 --requests 50
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import free_port  # noqa: E402

DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def classifier_uri() -> str:
    """The classifier the export stage last logged to this pipeline run."""
    import mlflow

    run_id = json.loads(Path("metrics/mlflow_run.json").read_text())["mlflow_run_id"]
    run = mlflow.MlflowClient().get_run(run_id)
    (model,) = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = 'classifier'",
        order_by=[{"field_name": "creation_time", "ascending": False}],
        max_results=1,
        output_format="list",
    )
    return f"models:/{model.model_id}"


def serve(uri: str, port: int, store: str) -> subprocess.Popen:
    command = ["mlflow", "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with DIRECT.open(f"http://127.0.0.1:{port}/ping", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit("mlflow models serve exited before it answered") from None
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("mlflow models serve did not answer within 180 s")


def client(url, images, expected, requests, seed, latencies, errors, served):
    rng = np.random.default_rng(seed)
    for _ in range(requests):
        rows = rng.integers(0, len(images), rng.integers(1, 33))
        body = json.dumps({"inputs": images[rows].tolist()}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        start = time.perf_counter()
        try:
            with DIRECT.open(request, timeout=120) as answer:
                predictions = json.loads(answer.read())["predictions"]
        except Exception as exc:  # counted, not raised: the run goes on
            errors.append(repr(exc))
            continue
        latencies.append(time.perf_counter() - start)
        if [p["class"] for p in predictions] != [expected[i] for i in rows]:
            errors.append(f"wrong classes for rows {rows.tolist()}")
        served.append(len(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="per client")
    args = parser.parse_args()
    import mlflow
    import onnxruntime as ort

    from cnnpipe import paths
    from cnnpipe.data.prepared import load_prepared
    from cnnpipe.data.split import load_split
    from cnnpipe.tracking.store import mlflow_uri

    store = mlflow_uri()  # the project's store, as the stages use it
    mlflow.set_tracking_uri(store)

    data = load_prepared(paths.PREPARED)
    images = np.asarray(data.images[load_split(paths.SPLIT)["test"]])
    session = ort.InferenceSession(paths.ONNX)
    classes = json.loads(session.get_modelmeta().custom_metadata_map["classes"])
    expected = [classes[i] for i in session.run(None, {"images": images})[0].argmax(1)]

    port = free_port()
    server = serve(classifier_uri(), port, store)
    url = f"http://127.0.0.1:{port}/invocations"
    latencies, errors, served = [], [], []
    try:
        threads = [
            threading.Thread(
                target=client,
                args=(url, images, expected, args.requests, i, latencies, errors, served),
            )
            for i in range(args.clients)
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    latencies.sort()
    print(
        json.dumps(
            {
                "clients": args.clients,
                "requests": args.clients * args.requests,
                "errors": len(errors),
                "first_errors": errors[:3],
                "p50_ms": round(1000 * statistics.median(latencies), 1),
                "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
                "images_per_s": round(sum(served) / seconds),
                "cpus": os.cpu_count(),
            }
        )
    )
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
