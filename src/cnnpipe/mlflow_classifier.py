"""The registered model's Python face: raw uint8 images in, class names and probabilities out.

MLflow stores this file with the model ("models from code") and runs it to load the
model, so `mlflow models serve` and `mlflow.pyfunc.load_model` need MLflow, ONNX Runtime,
NumPy and pandas, but not cnnpipe. It imports nothing from cnnpipe for that reason.
The ONNX file it runs does the preprocessing itself; its metadata names the classes.
"""

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# A request's images at most: a bigger batch is refused, not run out of memory.
MAX_IMAGES = 1024


class BadImages(MlflowException):
    """A request this model cannot answer, said in one line.

    MLflow's scoring server writes the whole request in front of a predict error's message
    ("Failed to predict data '<every pixel>'. Error: ..."), which buries the cause under
    kilobytes of numbers; this message keeps the cause alone. An HTTP 400 for the client.
    """

    def __init__(self, cause: str):
        self._cause = cause
        super().__init__(cause, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._cause

    @message.setter
    def message(self, _with_the_request: str) -> None:
        pass


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Per image: the top class, its probability, and every class's probability (in the
    order of the model's `classes` metadata)."""

    def load_context(self, context):
        import onnxruntime as ort

        self.session = ort.InferenceSession(
            context.artifacts["onnx"], providers=ort.get_available_providers()
        )
        self.input = self.session.get_inputs()[0]
        self.classes = json.loads(self.session.get_modelmeta().custom_metadata_map["classes"])

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        images = np.asarray(model_input)
        if images.size == 0:  # [] in JSON, whatever shape was meant
            raise BadImages("expected at least one image; got an empty batch")
        expected = tuple(self.input.shape[1:])
        if images.ndim != 4 or images.shape[1:] != expected:
            raise BadImages(
                f"expected uint8 images (N, {', '.join(map(str, expected))}); "
                f"got an array of shape {images.shape}"
            )
        if len(images) > MAX_IMAGES:
            raise BadImages(
                f"at most {MAX_IMAGES} images a request; got {len(images)}: send them in parts"
            )
        if images.dtype != np.uint8:
            numbers = np.issubdtype(images.dtype, np.number)
            if not numbers or not np.all((images >= 0) & (images <= 255) & (images % 1 == 0)):
                raise BadImages(f"expected whole pixel values 0..255; got {images.dtype} values")
            images = images.astype(np.uint8)
        probs = self.session.run(None, {self.input.name: images})[0]
        top = probs.argmax(axis=1)
        return pd.DataFrame(
            {
                "class": [self.classes[i] for i in top],
                "probability": probs[np.arange(len(top)), top].astype(float),
                "probabilities": [row.astype(float).tolist() for row in probs],
            }
        )


mlflow.models.set_model(ImageClassifier())
