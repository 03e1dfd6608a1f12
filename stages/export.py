"""Stage 5: write the model as ONNX, TorchScript and a state_dict; fail if an exported file
computes different logits from PyTorch on the test split. The network and its ONNX are
logged as MLflow models too, and registered with `tracking.register: true`."""

import sys

import torch

from cnnpipe import tracking
from cnnpipe.checkpoint import load_model, save_weights
from cnnpipe.config import load_params
from cnnpipe.data.batches import DeviceData
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.errors import exit_on_error
from cnnpipe.export import check_parity, compare, save_full_pickle, to_onnx, to_torchscript
from cnnpipe.files import atomic_path, read_json, write_json
from cnnpipe.mlflow_models import log_models
from cnnpipe.predict import OnnxModel, TorchModel

EXPORTS = {"onnx": "models/model.onnx", "torchscript": "models/model.pt"}


@exit_on_error
def main():
    params = load_params()
    cfg = params.export
    model, spec = load_model("models/best.pth", "models/model.json", "cpu")

    # The parity check runs on the real test images, normalised as in training.
    data, test_idx = load_prepared("data/prepared"), load_split("data/split")["test"]
    test = DeviceData(data.images[test_idx], data.labels[test_idx], spec.mean, spec.std, "cpu")
    images = torch.cat([x for x, _ in test.batches(256)])
    with torch.no_grad():
        reference = model(images).numpy()
    images = images.numpy()

    # Exported files take their final names only once they have passed the check.
    parity = {"max_abs_logit": float(abs(reference).max())}
    with atomic_path(EXPORTS["onnx"]) as onnx_file, atomic_path(EXPORTS["torchscript"]) as ts_file:
        to_onnx(model, spec, onnx_file, opset=cfg.opset)
        to_torchscript(model, spec, ts_file)
        parity |= compare("onnx", OnnxModel(onnx_file).logits(images), reference)
        parity |= compare("torchscript", TorchModel(ts_file).logits(images), reference)
        for name in EXPORTS:
            check_parity(parity, name, cfg.atol, cfg.rtol, cfg.min_top1_agreement)
    save_weights(model.state_dict(), "models/model_state_dict.pth")
    warning = save_full_pickle(model, "models/unsafe_pickle", cfg.full_pickle)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    write_json("metrics/export.json", parity)

    with tracking.continue_run(params) as run:
        run.log_metrics(parity)
        files = [*EXPORTS.values(), "models/model_state_dict.pth"]
        if cfg.full_pickle:
            files.append("models/unsafe_pickle/model_full.pth")
        run.log_files(*files, folder="model")
        test_acc = read_json("metrics/evaluate.json")["test_acc"]
        log_models(run, model, EXPORTS["onnx"], images[:2], params.tracking, test_acc)
    print(
        f"exported {', '.join(EXPORTS.values())}: max |logit diff| "
        f"{parity['onnx_max_abs_diff']:.2e} (ONNX), {parity['torchscript_max_abs_diff']:.2e} "
        f"(TorchScript), top-1 agreement {parity['onnx_top1_agreement']:.2%}"
    )


if __name__ == "__main__":
    main()
