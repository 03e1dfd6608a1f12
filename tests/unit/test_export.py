import json

import numpy as np
import onnx
import pytest
import torch

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.errors import CnnpipeError
from cnnpipe.export import (
    check_parity,
    compare,
    load_torchscript,
    save_full_pickle,
    to_onnx,
    to_torchscript,
)
from cnnpipe.predict import OnnxModel


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
    result = compare("onnx", OnnxModel(path).logits(images.numpy()), reference)
    assert result["onnx_max_abs_diff"] < 1e-4
    assert result["onnx_top1_agreement"] == 1.0
    check_parity(result | {"max_abs_logit": 1.0}, "onnx", atol=1e-4, rtol=0, min_agreement=1.0)


def result(diff, logit=1.0, agreement=1.0):
    return {
        "onnx_max_abs_diff": diff,
        "max_abs_logit": logit,
        "onnx_top1_agreement": agreement,
    }


def test_parity_gate_fails_beyond_tolerance():
    with pytest.raises(CnnpipeError, match=r"onnx logits differ from PyTorch by 0.01, more than"):
        check_parity(result(0.01), "onnx", atol=1e-4, rtol=1e-4, min_agreement=1.0)
    # Large logits earn a proportionally larger allowance.
    check_parity(result(0.01, logit=1000.0), "onnx", atol=1e-4, rtol=1e-4, min_agreement=1.0)
    with pytest.raises(CnnpipeError, match="onnx top-1 agrees with PyTorch on 90.00%"):
        check_parity(result(0.0, agreement=0.9), "onnx", atol=1e-4, rtol=0, min_agreement=1.0)
    check_parity(result(0.0, agreement=np.float64(1.0)), "onnx", 1e-4, 0, 1.0)


def small_model():
    spec = ModelSpec("lenet", 3, 1, 16, [0.5], [0.25], ["a", "b", "向日葵"])
    torch.manual_seed(0)
    return spec.build().eval(), spec


def test_torchscript_round_trip_keeps_logits_and_metadata(tmp_path):
    model, spec = small_model()
    to_torchscript(model, spec, tmp_path / "model.pt")
    loaded, meta = load_torchscript(tmp_path / "model.pt")
    assert json.loads(meta["classes"]) == ["a", "b", "向日葵"] and meta["image_size"] == "16"
    images = torch.randn(9, 1, 16, 16)  # another batch size than the one traced
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images), atol=1e-6)


def test_full_pickle_only_on_request_and_with_a_warning(tmp_path):
    model, _ = small_model()
    folder = tmp_path / "unsafe_pickle"
    assert save_full_pickle(model, folder, enabled=False) is None
    assert [p.name for p in folder.iterdir()] == ["README.txt"]

    warning = save_full_pickle(model, folder, enabled=True)
    assert "weights_only=False" in warning and "trust" in warning
    assert (folder / "README.txt").read_text().strip() == warning
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(folder / "model_full.pth", weights_only=True)
    whole = torch.load(folder / "model_full.pth", weights_only=False)
    images = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(whole(images), model(images))

    save_full_pickle(model, folder, enabled=False)  # switching it off removes the pickle
    assert [p.name for p in folder.iterdir()] == ["README.txt"]
