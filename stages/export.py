"""Stage 5: write the model as ONNX, TorchScript and a state_dict; fail if an exported file
computes different probabilities from PyTorch on the test split. Every file takes raw
uint8 images (N, H, W, C) and returns probabilities (model_files.py). The model is logged
to MLflow as PyTorch, ONNX and a classifier that answers with class names, which is
registered with `tracking.register: true`."""

import sys

from cnnpipe import paths
from cnnpipe.checkpoint import load_model, save_weights
from cnnpipe.classifier import shipped
from cnnpipe.config import load_params
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.errors import exit_on_error
from cnnpipe.export import (
    check_parity,
    compare,
    reference,
    save_full_pickle,
    to_onnx,
    to_torchscript,
)
from cnnpipe.files import atomic_path, read_json, write_json
from cnnpipe.mlflow_models import log_models
from cnnpipe.model_files import Metadata, OnnxModel, TorchModel
from cnnpipe.tracking.run import continue_run

EXPORTS = {"onnx": paths.ONNX, "torchscript": paths.TORCHSCRIPT}


@exit_on_error
def main():
    params = load_params()
    cfg = params.export
    network, spec = load_model(paths.BEST_WEIGHTS, paths.MODEL_SPEC, "cpu")
    model, metadata = shipped(network, spec), Metadata.from_spec(spec)

    # The parity check runs on the real test images, raw as a decoder gives them.
    data, test_idx = load_prepared(paths.PREPARED), load_split(paths.SPLIT)["test"]
    images = data.inputs(test_idx, spec.image_size)
    expected, max_logit = reference(model, images)

    # Exported files take their final names only once they have passed the check.
    parity = {"max_abs_logit": max_logit}
    with atomic_path(EXPORTS["onnx"]) as onnx_file, atomic_path(EXPORTS["torchscript"]) as ts_file:
        to_onnx(model, metadata, onnx_file, opset=cfg.opset)
        to_torchscript(model, metadata, ts_file)
        parity |= compare("onnx", OnnxModel(onnx_file).probabilities(images), expected)
        parity |= compare("torchscript", TorchModel(ts_file).probabilities(images), expected)
        for name in EXPORTS:
            check_parity(parity, name, cfg.atol, cfg.rtol, cfg.min_top1_agreement)
    save_weights(network.state_dict(), paths.STATE_DICT)
    warning = save_full_pickle(network, paths.UNSAFE_PICKLE, cfg.full_pickle)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    write_json(paths.EXPORT_METRICS, parity)

    with continue_run(params) as run:
        run.log_metrics(parity)
        files = [*EXPORTS.values(), paths.STATE_DICT]
        if cfg.full_pickle:
            files.append(f"{paths.UNSAFE_PICKLE}/model_full.pth")
        run.log_files(*files, folder="model")
        test_acc = read_json(paths.EVALUATE_METRICS)["test_acc"]
        log_models(run, model, metadata, EXPORTS["onnx"], images[:2], params.tracking, test_acc)
    print(
        f"exported {', '.join(EXPORTS.values())}: max |probability diff| "
        f"{parity['onnx_max_diff_ppm']:.2g} ppm (ONNX), "
        f"{parity['torchscript_max_diff_ppm']:.2g} ppm (TorchScript), "
        f"top-1 agreement {parity['onnx_top1_agreement']:.2%}"
    )


if __name__ == "__main__":
    main()
