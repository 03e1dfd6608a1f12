import json

import numpy as np
import onnx
import pytest
import torch

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.errors import CnnpipeError
from cnnpipe.export import check_parity, onnx_parity, to_onnx


def test_onnx_export_has_dynamic_batch_metadata_and_matches_torch(tmp_path):
    spec = ModelSpec("lenet", 3, 1, 16, [0.5], [0.25], ["a", "b", "向日葵"])
    torch.manual_seed(0)
    model = spec.build().eval()
    path = tmp_path / "model.onnx"
    to_onnx(model, spec, path, opset=20)

    proto = onnx.load(str(path))
    assert not list(tmp_path.glob("*.data"))  # weights live inside the one file
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param  # symbolic, so any batch size runs
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == ["a", "b", "向日葵"]
    assert json.loads(meta["mean"]) == [0.5] and meta["image_size"] == "16"

    images = torch.randn(37, 1, 16, 16)
    with torch.no_grad():
        reference = model(images).numpy()
    result = onnx_parity(path, images.numpy(), reference)
    assert result["onnx_max_abs_diff"] < 1e-4
    assert result["onnx_top1_agreement"] == 1.0
    check_parity(result, atol=1e-4, rtol=0, min_agreement=1.0)


def result(diff, logit=1.0, agreement=1.0):
    return {
        "onnx_max_abs_diff": diff,
        "onnx_max_abs_logit": logit,
        "onnx_top1_agreement": agreement,
    }


def test_parity_gate_fails_beyond_tolerance():
    with pytest.raises(CnnpipeError, match=r"differ from PyTorch by 0.01, more than .* = 0.0002"):
        check_parity(result(0.01), atol=1e-4, rtol=1e-4, min_agreement=1.0)
    # Large logits earn a proportionally larger allowance.
    check_parity(result(0.01, logit=1000.0), atol=1e-4, rtol=1e-4, min_agreement=1.0)
    with pytest.raises(CnnpipeError, match="agrees with PyTorch on 90.00%"):
        check_parity(result(0.0, agreement=0.9), atol=1e-4, rtol=0, min_agreement=1.0)
    check_parity(result(0.0, agreement=np.float64(1.0)), atol=1e-4, rtol=0, min_agreement=1.0)
