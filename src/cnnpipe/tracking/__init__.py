"""MLflow tracking, in three parts: the store (store.py: where, how processes share it),
the run a pipeline run logs to (run.py), and what ties it to code and data
(provenance.py). study.py holds a study's parent run. Import the part you need."""
