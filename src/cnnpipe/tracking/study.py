"""A study's parent run: the MLflow run that holds a study's experiments as children
and its report."""

from cnnpipe.tracking.store import retry, store_lock

STUDY_TAG = "study"  # on each experiment's run, and on the study's parent run
PARENT_TAG = "study_parent"  # on the parent only: the study it holds


def study_parent(experiment_id: str, study: str) -> str:
    """The id of the study's parent run, created the first time it is asked for. Under the
    store's lock, so the parallel experiments of one study find one parent."""
    import mlflow
    from mlflow.entities import RunStatus

    client = mlflow.MlflowClient()
    with store_lock():
        found = retry(
            client.search_runs,
            [experiment_id],
            filter_string=f"tags.{PARENT_TAG} = '{study}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        tags = {PARENT_TAG: study, STUDY_TAG: study}
        parent = retry(client.create_run, experiment_id, run_name=f"study {study}", tags=tags)
        # It trains nothing itself: its children are the runs, it holds their report.
        retry(client.set_terminated, parent.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
        return parent.info.run_id
