"""Export a trained network to ONNX and check that ONNX Runtime computes what PyTorch does."""

import json
from pathlib import Path

import numpy as np
import onnx
import torch

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.errors import CnnpipeError


def to_onnx(model: torch.nn.Module, spec: ModelSpec, path: str | Path, opset: int) -> None:
    """Write one self-contained ONNX file with a dynamic batch axis and the spec as metadata."""
    model = model.eval()  # inference graph: dropout off, BatchNorm frozen, aux heads dropped
    example = torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    for key, value in _metadata(spec).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    # Weights inside the one file, so Netron and ONNX Runtime need nothing beside it.
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def _metadata(spec: ModelSpec) -> dict[str, str]:
    return {
        "model": spec.model,
        "classes": json.dumps(spec.classes, ensure_ascii=False),
        "image_size": str(spec.image_size),
        "in_channels": str(spec.in_channels),
        "mean": json.dumps(spec.mean),
        "std": json.dumps(spec.std),
        "input_scale": "pixels / 255, then (x - mean) / std per channel",
    }


def onnx_parity(path: str | Path, images: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Run ONNX Runtime on `images` and compare its logits with PyTorch's `reference`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [session.run(None, {"image": images[i : i + 256]})[0] for i in range(0, len(images), 256)]
    )
    return {
        "onnx_max_abs_diff": float(np.abs(logits - reference).max()),
        "onnx_max_abs_logit": float(np.abs(reference).max()),
        "onnx_top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
    }


def check_parity(result: dict[str, float], atol: float, rtol: float, min_agreement: float):
    """Fail unless max |ONNX - PyTorch| <= atol + rtol * max |PyTorch logit| and the top-1
    classes agree often enough. The relative part keeps the gate fair to networks whose
    logits are large, where float32 rounding alone moves them by more than atol."""
    allowed = atol + rtol * result["onnx_max_abs_logit"]
    if result["onnx_max_abs_diff"] > allowed:
        raise CnnpipeError(
            f"ONNX logits differ from PyTorch by {result['onnx_max_abs_diff']:.3g}, more than "
            f"export.atol + export.rtol * {result['onnx_max_abs_logit']:.3g} = {allowed:.3g}"
        )
    if result["onnx_top1_agreement"] < min_agreement:
        raise CnnpipeError(
            f"ONNX top-1 agrees with PyTorch on {result['onnx_top1_agreement']:.2%} of the "
            f"test images (export.min_top1_agreement is {min_agreement})"
        )
