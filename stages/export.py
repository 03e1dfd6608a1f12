"""Stage 5: write the model as ONNX and as a state_dict; fail if ONNX disagrees with PyTorch."""

import numpy as np
import torch

from cnnpipe import tracking
from cnnpipe.checkpoint import load_model, save_weights
from cnnpipe.config import load_params
from cnnpipe.data.batches import DeviceData
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.errors import exit_on_error
from cnnpipe.export import check_parity, onnx_parity, to_onnx
from cnnpipe.files import atomic_path, write_json


@exit_on_error
def main():
    params = load_params()
    model, spec = load_model("models/best.pth", "models/model.json", "cpu")

    # The parity check runs on the real test images, normalised as in training.
    data, test_idx = load_prepared("data/prepared"), load_split("data/split")["test"]
    test = DeviceData(data.images[test_idx], data.labels[test_idx], spec.mean, spec.std, "cpu")
    images = torch.cat([x for x, _ in test.batches(256)])
    with torch.no_grad():
        reference = model(images).numpy()

    # The ONNX file takes its final name only once it has passed the check.
    with atomic_path("models/model.onnx") as onnx_file:
        to_onnx(model, spec, onnx_file, opset=params.export.opset)
        parity = onnx_parity(onnx_file, images.numpy().astype(np.float32), reference)
        cfg = params.export
        check_parity(parity, cfg.atol, cfg.rtol, cfg.min_top1_agreement)
    save_weights(model.state_dict(), "models/model_state_dict.pth")
    write_json("metrics/export.json", parity)

    with tracking.continue_run(params):
        tracking.log_metrics(parity)
        tracking.log_files("models/model.onnx", "models/model_state_dict.pth", folder="model")
    print(
        f"exported models/model.onnx: max |logit diff| {parity['onnx_max_abs_diff']:.2e}, "
        f"top-1 agreement {parity['onnx_top1_agreement']:.2%}"
    )


if __name__ == "__main__":
    main()
