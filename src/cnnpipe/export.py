"""Export a trained network (ONNX, TorchScript, optionally a whole pickle) and check that each
exported file computes what the PyTorch model does.

What goes into the files is the shipped classifier (classifier.py: uint8 images in,
probabilities out) with the metadata model_files.py defines.
"""

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from cnnpipe.classifier import ImageClassifier
from cnnpipe.errors import CnnpipeError
from cnnpipe.files import atomic_path, write_text
from cnnpipe.model_files import (
    INPUT,
    METADATA_FILE,
    OUTPUT,
    TORCHSCRIPT_DEPRECATION,
    Metadata,
)


def example_images(metadata: Metadata, n: int = 2) -> torch.Tensor:
    size = metadata.image_size
    return torch.zeros(n, size, size, metadata.in_channels, dtype=torch.uint8)


def to_onnx(model: ImageClassifier, metadata: Metadata, path: str | Path, opset: int) -> None:
    """Write one self-contained ONNX file with a dynamic batch axis and the metadata."""
    program = torch.onnx.export(
        model.eval(),
        (example_images(metadata),),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT],
        output_names=[OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    for graph in [proto.graph, *proto.functions]:
        portable_stack_traces(graph)
    for key, value in metadata.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    # Weights inside the one file, so Netron and ONNX Runtime need nothing beside it.
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def to_torchscript(model: ImageClassifier, metadata: Metadata, path: str | Path) -> None:
    """A traced TorchScript program with the metadata stored inside the archive."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCHSCRIPT_DEPRECATION, FutureWarning)
        traced = torch.jit.trace(model.eval(), example_images(metadata))
        forget_source_locations(traced)
        extra = {METADATA_FILE: json.dumps(metadata.to_props(), ensure_ascii=False)}
        torch.jit.save(traced, str(path), _extra_files=extra)


STACK_TRACE = "pkg.torch.onnx.stack_trace"
SOURCE_FILE = re.compile(r'File "([^"]+)"')


def portable_stack_traces(graph) -> None:
    """Name the source files in the stack traces of a graph's (or a function's) nodes from
    their import root (`cnnpipe/classifier.py`, `torch/nn/modules/conv.py`) instead of
    their absolute path, so the same model exported from another folder is the same bytes."""
    roots = sorted((str(Path(p).resolve()) for p in sys.path if p), key=len, reverse=True)

    def relative(match: re.Match) -> str:
        path = match.group(1)
        root = next((r for r in roots if path.startswith(r.rstrip("/") + "/")), None)
        return f'File "{path[len(root.rstrip("/")) + 1 :] if root else Path(path).name}"'

    for node in graph.node:
        for entry in node.metadata_props:
            if entry.key == STACK_TRACE:
                entry.value = SOURCE_FILE.sub(relative, entry.value)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                portable_stack_traces(subgraph)


def forget_source_locations(traced: torch.jit.ScriptModule) -> None:
    """Clear the Python source locations a trace records on every node: torch.jit.save
    writes them (absolute paths) into the archive's debug files."""

    def nodes(block):
        for node in block.nodes():
            yield node
            for inner in node.blocks():
                yield from nodes(inner)

    for module in traced.modules():
        try:
            graph = module.graph
        except RuntimeError:  # a submodule the trace never called (GoogLeNet's aux heads)
            continue
        blank = graph.create("prim::Constant")  # a node with no source location
        for node in nodes(graph):
            node.copyMetadata(blank)
        blank.destroy()


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


def reference(model: ImageClassifier, images: np.ndarray, batch: int = 256):
    """PyTorch's probabilities for uint8 images, and the largest |logit| (the gate's scale)."""
    probs, scale = [], 0.0
    with torch.no_grad():
        for start in range(0, len(images), batch):
            logits = model.logits(torch.from_numpy(images[start : start + batch]))
            probs.append(logits.softmax(dim=1).numpy())
            scale = max(scale, float(logits.abs().max()))
    return np.concatenate(probs), scale


def compare(name: str, probs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far an exported model's probabilities are from PyTorch's on the same images.

    The largest difference is in parts per million of a probability: float32 rounding
    leaves about 0.1 to 1, which `dvc metrics show` (five decimals) would print as 0.0.
    """
    return {
        f"{name}_max_diff_ppm": float(np.abs(probs - reference).max()) * 1e6,
        f"{name}_top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
    }


def check_parity(result, name: str, atol: float, rtol: float, min_agreement: float) -> None:
    """Fail unless max |exported - PyTorch| <= atol + rtol * max |PyTorch logit| and the top-1
    classes agree often enough. Softmax moves a probability by at most half of what its
    logits move, so the allowance follows the logits' scale: networks with large logits,
    where float32 rounding alone moves them by more than atol, are judged fairly."""
    diff, scale = result[f"{name}_max_diff_ppm"] / 1e6, result["max_abs_logit"]
    allowed = atol + rtol * scale
    if diff > allowed:
        raise CnnpipeError(
            f"{name} probabilities differ from PyTorch by {diff:.3g}, more than "
            f"export.atol + export.rtol * {scale:.3g} = {allowed:.3g}"
        )
    agreement = result[f"{name}_top1_agreement"]
    if agreement < min_agreement:
        raise CnnpipeError(
            f"{name} top-1 agrees with PyTorch on {agreement:.2%} of the test images "
            f"(export.min_top1_agreement is {min_agreement})"
        )
