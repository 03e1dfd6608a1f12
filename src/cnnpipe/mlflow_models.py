"""The trained network as MLflow models, and the registry's champion.

The export stage logs the network with `mlflow.pytorch.log_model` (MLflow stores it with
torch.export, so loading it needs neither cnnpipe nor the network's Python class) and
the ONNX file with `mlflow.onnx.log_model`, both with a signature and an input example:
normalised images (N, C, H, W) in, logits (N, classes) out. With `tracking.register`
the PyTorch model becomes a new version of the registered model, and the alias
`champion` points at the version with the best test accuracy.
"""

import numpy as np

from cnnpipe.environment import pins
from cnnpipe.tracking import retry, store_lock

CHAMPION = "champion"
SCORE_TAG = "test_acc"


def log_models(run, model, onnx_path, example: np.ndarray, tracking_cfg, test_acc: float):
    """Log both models to `run`; returns the PyTorch model's URI (None untracked)."""
    if not run:
        return None
    import mlflow
    import onnx
    import onnxruntime
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        logits = model(torch.from_numpy(example)).numpy()
    signature = infer_signature(example, logits)
    # The lock's pins, the versions the pipeline ran with (inferring requirements instead
    # would import-trace the model in a subprocess).
    info = mlflow.pytorch.log_model(
        model,
        name="pytorch",
        signature=signature,
        input_example=example,
        pip_requirements=pins("torch", "numpy"),
    )
    mlflow.onnx.log_model(
        onnx.load(str(onnx_path)),
        name="onnx",
        signature=signature,
        input_example=example,
        pip_requirements=pins("onnx", "onnxruntime", "numpy"),
        # The providers this machine has, CUDA first when it is one of them.
        onnx_execution_providers=onnxruntime.get_available_providers(),
    )
    if tracking_cfg.register:
        register(info.model_uri, tracking_cfg.model_name, test_acc)
    return info.model_uri


def register(model_uri: str, name: str, test_acc: float) -> str:
    """A new version of `name`; `champion` moves to it if it scores best. Returns it."""
    import mlflow

    client = mlflow.MlflowClient()
    version = retry(mlflow.register_model, model_uri, name, tags={SCORE_TAG: str(test_acc)})
    # Compare and move under the store's lock, so that of parallel experiments on one
    # SQLite store the best wins. (A tracking server offers no lock: there, two versions
    # registered at the same instant may leave the alias one behind.)
    with store_lock():
        versions = retry(client.search_model_versions, f"name = '{name}'")
        scored = [v for v in versions if SCORE_TAG in v.tags]
        best = max(scored, key=lambda v: (float(v.tags[SCORE_TAG]), -int(v.version)))
        retry(client.set_registered_model_alias, name, CHAMPION, best.version)
    won = best.version == version.version
    print(
        f"registered {name} version {version.version} (test accuracy {test_acc:.4f}); "
        f"{CHAMPION} is version {best.version}{' now' if won else ''}"
    )
    return version.version
