"""Every file the stages pass to one another, named once. dvc.yaml lists the same paths
(tests/unit/test_stage_deps.py checks that each of its paths is named here), and stage
scripts use these names instead of writing the paths again. All are relative to the
repository's root, where DVC runs every stage."""

# check
PARAMS_CHECKED = "data/params_checked.json"
# prepare
PREPARED = "data/prepared"
PREPARE_REPORT = "data/prepared/report.json"
PREPARE_METRICS = "metrics/prepare.json"
# split
SPLIT = "data/split"
FOLDS = "data/folds"
# train
BEST_WEIGHTS = "models/best.pth"
MODEL_SPEC = "models/model.json"
TRAINING_STATE = "models/train_state.pt"  # the resume file, deleted when training ends
HISTORY = "metrics/history.csv"
TRAIN_METRICS = "metrics/train.json"
MODEL_SUMMARY_TEXT = "metrics/model_summary.txt"
MODEL_SUMMARY_TABLE = "metrics/model_summary.csv"
RUN_FILE = "metrics/mlflow_run.json"  # the MLflow run the later stages add to
# crossval
CROSSVAL_METRICS = "metrics/crossval.json"
# evaluate
EVALUATE_METRICS = "metrics/evaluate.json"
PER_CLASS = "metrics/per_class.csv"
CONFUSION = "metrics/confusion.csv"
CONFUSION_PNG = "metrics/confusion.png"
CONFUSION_NORMALIZED_PNG = "metrics/confusion_normalized.png"
MISCLASSIFIED_PNG = "metrics/misclassified.png"
CURVES_PNG = "metrics/curves.png"
# export
ONNX = "models/model.onnx"
TORCHSCRIPT = "models/model.pt"
STATE_DICT = "models/model_state_dict.pth"
UNSAFE_PICKLE = "models/unsafe_pickle"
EXPORT_METRICS = "metrics/export.json"
# inspect: a folder of figures (inspection.VIEWS names them, and this one)
INSPECT = "metrics/inspect"
AUGMENTED_PNG = f"{INSPECT}/augmented.png"
