"""Tracking against a real SQLite store shared by processes, as parallel experiments share it."""

import subprocess
import sys

from mlflow import MlflowClient

# Each process logs the same 40 datasets to its own run in one store, as parallel
# experiments of a sweep log the same train/validation/test splits.
LOG_DATASETS = """
import sys, warnings
import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from cnnpipe.tracking.store import DATASET_RACE, retry

warnings.simplefilter("ignore")
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("race")
source = resolve_dataset_source("data/prepared")
with mlflow.start_run():
    for i in range(40):
        dataset = MetaDataset(source, name=f"part-{i}", digest=f"{i:016x}")
        retry(mlflow.log_input, dataset, context="training", transient=DATASET_RACE)
"""


def test_parallel_runs_logging_the_same_datasets_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=60"
    client = MlflowClient(uri)
    client.create_experiment("race")  # the schema, before the processes race
    script = tmp_path / "log_datasets.py"
    script.write_text(LOG_DATASETS)
    workers = [
        subprocess.Popen([sys.executable, str(script), uri], cwd=tmp_path, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors = [w.communicate()[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    experiment = client.get_experiment_by_name("race").experiment_id
    runs = client.search_runs([experiment])
    assert [len(r.inputs.dataset_inputs) for r in runs] == [40, 40]
