"""Export a trained network (ONNX, TorchScript, optionally a whole pickle) and check that each
exported file computes what the PyTorch model does."""

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from cnnpipe.checkpoint import ModelSpec
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_path, write_text
from cnnpipe.predict import METADATA_FILE, Preprocessing


def metadata(spec: ModelSpec) -> dict[str, str]:
    return Preprocessing.from_spec(spec).to_metadata()


def _example(spec: ModelSpec) -> torch.Tensor:
    return torch.zeros(2, spec.in_channels, spec.image_size, spec.image_size)


def to_onnx(model: torch.nn.Module, spec: ModelSpec, path: str | Path, opset: int) -> None:
    """Write one self-contained ONNX file with a dynamic batch axis and the spec as metadata."""
    model = model.eval()  # inference graph: dropout off, BatchNorm frozen, aux heads dropped
    program = torch.onnx.export(
        model,
        (_example(spec),),
        dynamo=True,
        opset_version=opset,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    for key, value in metadata(spec).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    # Weights inside the one file, so Netron and ONNX Runtime need nothing beside it.
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


# TorchScript is deprecated in favour of torch.export from PyTorch 2.14 on, but it is the
# format that Netron draws as a graph under a .pt name and that libtorch loads from C++.
_TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


def to_torchscript(model: torch.nn.Module, spec: ModelSpec, path: str | Path) -> None:
    """A traced TorchScript program with the metadata stored inside the archive."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _TORCHSCRIPT_DEPRECATION, FutureWarning)
        traced = torch.jit.trace(model.eval(), _example(spec))
        extra = {METADATA_FILE: json.dumps(metadata(spec), ensure_ascii=False)}
        torch.jit.save(traced, str(path), _extra_files=extra)


def load_torchscript(path: str | Path):
    """(module, metadata) of a TorchScript file written by to_torchscript."""
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _TORCHSCRIPT_DEPRECATION, FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    return module.eval(), meta


PICKLE_WARNING = (
    "{path} is the whole model pickled as torch.save(model) writes it. Loading it needs "
    "torch.load(path, weights_only=False), which runs code stored in the file: load it only "
    "from a source you trust. model_state_dict.pth holds the same weights safely."
)


def save_full_pickle(model: torch.nn.Module, folder: str | Path, enabled: bool) -> str | None:
    """The notes' torch.save(model), only on request; the folder's README says what it holds."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model_full.pth"
    if not enabled:
        target.unlink(missing_ok=True)
        write_text(folder / "README.txt", "export.full_pickle is false: no pickled model here.\n")
        return None
    with atomic_path(target) as tmp:
        torch.save(model, tmp)
    warning = PICKLE_WARNING.format(path=target)
    write_text(folder / "README.txt", warning + "\n")
    return warning


def compare(name: str, logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far an exported model's logits are from PyTorch's on the same images."""
    return {
        f"{name}_max_abs_diff": float(np.abs(logits - reference).max()),
        f"{name}_top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
    }


def check_parity(result, name: str, atol: float, rtol: float, min_agreement: float) -> None:
    """Fail unless max |exported - PyTorch| <= atol + rtol * max |PyTorch logit| and the top-1
    classes agree often enough. The relative part keeps the gate fair to networks whose
    logits are large, where float32 rounding alone moves them by more than atol."""
    diff, scale = result[f"{name}_max_abs_diff"], result["max_abs_logit"]
    allowed = atol + rtol * scale
    if diff > allowed:
        raise CnnpipeError(
            f"{name} logits differ from PyTorch by {diff:.3g}, more than "
            f"export.atol + export.rtol * {scale:.3g} = {allowed:.3g}"
        )
    agreement = result[f"{name}_top1_agreement"]
    if agreement < min_agreement:
        raise CnnpipeError(
            f"{name} top-1 agrees with PyTorch on {agreement:.2%} of the test images "
            f"(export.min_top1_agreement is {min_agreement})"
        )
