import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.classifier import shipped
from cnnpipe.errors import CnnpipeError
from cnnpipe.export import (
    check_parity,
    compare,
    reference,
    save_full_pickle,
    to_onnx,
    to_torchscript,
)
from cnnpipe.model_files import Metadata, OnnxModel, load_torchscript

SPEC = ModelSpec("lenet", 3, 1, 16, [0.5], [0.25], ["a", "b", "向日葵"])


def small_model():
    torch.manual_seed(0)
    network = SPEC.build().eval()
    return network, shipped(network, SPEC), Metadata.from_spec(SPEC)


def raw_images(n: int, channels: int = 1) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, channels), dtype=np.uint8)


def test_shipped_model_does_the_training_preprocessing_inside():
    network, model, _ = small_model()
    images = raw_images(5)
    normalised = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        logits = network(normalised)
        assert torch.allclose(model(torch.from_numpy(images)), logits.softmax(1), atol=1e-6)
    probs, scale = reference(model, images, batch=2)  # batched like the export stage
    assert np.allclose(probs, logits.softmax(1).numpy(), atol=1e-6)
    assert np.allclose(probs.sum(1), 1) and scale == pytest.approx(float(logits.abs().max()))


def test_onnx_takes_raw_pixels_with_dynamic_batch_and_metadata(tmp_path):
    _, model, meta = small_model()
    path = tmp_path / "model.onnx"
    to_onnx(model, meta, path, opset=20)

    proto = onnx.load(str(path))
    assert not list(tmp_path.glob("*.data"))  # weights live inside the one file
    (image,) = proto.graph.input
    assert image.name == "images" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [16, 16, 1]  # N, H, W, C
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    # The preprocessing is the graph's first work: cast the bytes, scale, change layout.
    first = [node.op_type for node in proto.graph.node[:4]]
    assert "Cast" in first and "Transpose" in first
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == ["a", "b", "向日葵"]
    assert json.loads(props["mean"]) == [0.5] and props["image_size"] == "16"

    images = raw_images(37)
    expected, scale = reference(model, images)
    result = compare("onnx", OnnxModel(path).probabilities(images), expected)
    assert result["onnx_max_diff_ppm"] < 10
    assert result["onnx_top1_agreement"] == 1.0
    check_parity(result | {"max_abs_logit": scale}, "onnx", atol=1e-5, rtol=0, min_agreement=1.0)


def result(diff, logit=1.0, agreement=1.0):
    return {
        "onnx_max_diff_ppm": diff * 1e6,
        "max_abs_logit": logit,
        "onnx_top1_agreement": agreement,
    }


def test_parity_gate_fails_beyond_tolerance():
    with pytest.raises(CnnpipeError, match=r"onnx probabilities differ from PyTorch by 0.01, mor"):
        check_parity(result(0.01), "onnx", atol=1e-4, rtol=1e-4, min_agreement=1.0)
    # Large logits earn a proportionally larger allowance.
    check_parity(result(0.01, logit=1000.0), "onnx", atol=1e-4, rtol=1e-4, min_agreement=1.0)
    with pytest.raises(CnnpipeError, match="onnx top-1 agrees with PyTorch on 90.00%"):
        check_parity(result(0.0, agreement=0.9), "onnx", atol=1e-4, rtol=0, min_agreement=1.0)
    check_parity(result(0.0, agreement=np.float64(1.0)), "onnx", 1e-4, 0, 1.0)


def test_torchscript_round_trip_keeps_outputs_and_metadata(tmp_path):
    _, model, meta = small_model()
    to_torchscript(model, meta, tmp_path / "model.pt")
    loaded, props = load_torchscript(tmp_path / "model.pt")
    assert Metadata.from_props(props, "model.pt") == meta
    images = torch.from_numpy(raw_images(9))  # another batch size than the one traced
    with torch.no_grad():
        assert torch.allclose(loaded(images), model(images), atol=1e-6)


def test_a_file_from_before_the_raw_pixel_contract_is_refused(tmp_path):
    props = Metadata.from_spec(SPEC).to_props()
    del props["contract"]
    with pytest.raises(CnnpipeError, match="old.onnx: exported by an older cnnpipe"):
        Metadata.from_props(props, "old.onnx")
    with pytest.raises(CnnpipeError, match="x.pt: no cnnpipe metadata"):
        Metadata.from_props({}, "x.pt")


def test_full_pickle_only_on_request_and_with_a_warning(tmp_path):
    model, _, _ = small_model()
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


def test_exported_files_name_no_folder_of_this_machine(tmp_path):
    """Stack traces (ONNX) and source ranges (TorchScript) would otherwise carry absolute
    paths, and the same model exported from another folder would be other bytes."""
    import cnnpipe

    _, model, meta = small_model()
    to_onnx(model, meta, tmp_path / "model.onnx", opset=20)
    to_torchscript(model, meta, tmp_path / "model.pt")
    folders = {str(Path(cnnpipe.__file__).parents[1]), str(Path(torch.__file__).parents[1])}
    for name in ("model.onnx", "model.pt"):
        data = (tmp_path / name).read_bytes()
        assert not [f for f in folders if f.encode() in data], name
    traces = [
        entry.value
        for node in onnx.load(str(tmp_path / "model.onnx")).graph.node
        for entry in node.metadata_props
        if entry.key == "pkg.torch.onnx.stack_trace"
    ]
    assert any('File "cnnpipe/classifier.py"' in trace for trace in traces)
