"""The trained model as MLflow models, and the registry's champion.

The export stage logs three models, each taking uint8 images (N, H, W, C) with the
preprocessing inside (model_files.py), with a signature, an input example and the class
names in its metadata:

- `pytorch`: the network with its preprocessing, probabilities out. MLflow stores it
  with torch.export, so loading it needs neither cnnpipe nor the network's Python class.
- `onnx`: the exported ONNX file, probabilities out.
- `classifier`: a Python model (mlflow_classifier.py, stored as code) around the ONNX
  file that answers with the top class name, its probability and all probabilities:
  what `mlflow models serve` and `mlflow.pyfunc.load_model` give their users.

With `tracking.register` the classifier becomes a new version of the registered model,
and the alias `champion` points at the version with the best test accuracy.
"""

import contextlib
import os
from pathlib import Path

import numpy as np

from cnnpipe.environment import pins
from cnnpipe.progress import quiet
from cnnpipe.tracking.store import retry, store_lock

CHAMPION = "champion"
SCORE_TAG = "test_acc"
CLASSIFIER_CODE = Path(__file__).with_name("mlflow_classifier.py")


def log_models(run, model, metadata, onnx_path, example: np.ndarray, tracking_cfg, test_acc):
    """Log the three models to `run`; returns the classifier's URI (None untracked)."""
    if not run:
        return None
    import mlflow
    import onnx
    import onnxruntime
    import torch
    from mlflow.models import ModelSignature, infer_signature

    with torch.no_grad():
        probs = model(torch.from_numpy(example)).numpy()
    with _artifact_bars(enabled=not quiet()):
        signature = infer_signature(example, probs)
        about = {"classes": metadata.classes, "input": "uint8 images (N, H, W, C), 0..255"}
        # The lock's pins, the versions the pipeline ran with (inferring requirements instead
        # would import-trace the model in a subprocess).
        mlflow.pytorch.log_model(
            model,
            name="pytorch",
            signature=signature,
            input_example=example,
            metadata=about,
            pip_requirements=pins("torch", "numpy"),
        )
        mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="onnx",
            signature=signature,
            input_example=example,
            metadata=about,
            pip_requirements=pins("onnx", "onnxruntime", "numpy"),
            # The providers this machine has, CUDA first when it is one of them.
            onnx_execution_providers=onnxruntime.get_available_providers(),
        )
        info = mlflow.pyfunc.log_model(
            name="classifier",
            python_model=str(CLASSIFIER_CODE),
            artifacts={"onnx": str(onnx_path)},
            # No input schema: MLflow would refuse a wrong shape itself, echoing the request
            # before the cause; the classifier checks its input and names the problem.
            signature=ModelSignature(None, _classifier_outputs()),
            input_example=example,
            metadata=about,
            pip_requirements=pins("mlflow", "onnxruntime", "numpy", "pandas"),
        )
        if tracking_cfg.register:
            register(info.model_uri, tracking_cfg.model_name, test_acc)
        return info.model_uri


@contextlib.contextmanager
def _artifact_bars(enabled: bool):
    """MLflow draws a download bar as it logs each model; into a log file (dvc queue logs,
    CI) that is noise. MLflow reads this variable whenever it would draw one, so it is set
    for these calls only and put back after."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    if not enabled:
        os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _best_version(client, name: str):
    """The version with the best test accuracy (the earliest on a tie)."""
    versions = retry(client.search_model_versions, f"name = '{name}'")
    scored = [v for v in versions if SCORE_TAG in v.tags]
    return max(scored, key=lambda v: (float(v.tags[SCORE_TAG]), -int(v.version)))


def _classifier_outputs():
    """The columns mlflow_classifier.py answers with."""
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    return Schema(
        [
            ColSpec(DataType.string, "class"),
            ColSpec(DataType.double, "probability"),
            ColSpec(Array(DataType.double), "probabilities"),
        ]
    )


def register(model_uri: str, name: str, test_acc: float) -> str:
    """A new version of `name`; `champion` moves to it if it scores best. Returns it."""
    import mlflow

    client = mlflow.MlflowClient()
    version = retry(mlflow.register_model, model_uri, name, tags={SCORE_TAG: str(test_acc)})
    # Compare and move under the store's lock, so that of parallel experiments on one
    # SQLite store the best wins. A tracking server offers no lock: there each registrar
    # reads the versions again after moving the alias and moves it again if a better one
    # came meanwhile, so whoever moves it last has seen every version registered before.
    with store_lock():
        best = _best_version(client, name)
        while True:
            retry(client.set_registered_model_alias, name, CHAMPION, best.version)
            again = _best_version(client, name)
            if again.version == best.version:
                break
            best = again
    won = best.version == version.version
    print(
        f"registered {name} version {version.version} (test accuracy {test_acc:.4f}); "
        f"{CHAMPION} is version {best.version}{' now' if won else ''}"
    )
    return version.version
