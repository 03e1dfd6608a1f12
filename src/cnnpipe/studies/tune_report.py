"""A search's report in reports/NAME/ and on its parent run: trials.csv and trials.md (one
row per trial), Optuna's figures, and search.md with the best trial as the command that
reproduces it. None of the names is a study report's: a grid file run by both `cnnpipe
study` and `cnnpipe tune` keeps both reports in one folder."""

from pathlib import Path

from cnnpipe.files import write_csv, write_text
from cnnpipe.studies.report import REPORTS, markdown_table
from cnnpipe.studies.spec import yaml_value
from cnnpipe.tracking.store import retry


def write_tune_report(tuning, parent: str, root: Path) -> Path:
    import mlflow

    from cnnpipe.plots.search import search_pngs
    from cnnpipe.pruning import EXPERIMENT_ATTR
    from cnnpipe.studies.tune import FAILURE_ATTR, run_of, short

    search, study = tuning.search, tuning.study
    folder = root / REPORTS / search.name
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        name = trial.user_attrs.get(EXPERIMENT_ATTR, "")
        run = run_of(tuning, name) if name else None
        metrics = run.data.metrics if run else {}
        state = trial.state.name.lower()
        if state == "fail":
            state = "failed" if trial.user_attrs.get(FAILURE_ATTR) == "error" else "interrupted"
        epochs = metrics.get("pruned_after_epoch") or (run and int(run.data.params["epochs"]))
        rows.append(
            {
                "trial": trial.number,
                "state": state,
                **{key: trial.params.get(key, "") for key in search.space},
                "val_acc": metrics.get("best_val_acc"),
                "test_acc": metrics.get("test_acc"),
                "epochs": epochs,
                "seconds": metrics.get("train_seconds"),
                "experiment": name,
            }
        )
    write_csv(folder / "trials.csv", rows)
    shown = [{k: short(v) if k in search.space else v for k, v in r.items()} for r in rows]
    write_text(folder / "trials.md", markdown_table(shown, list(rows[0]) if rows else []))
    figures = search_pngs(study, folder)
    write_text(folder / "search.md", _summary(tuning, rows, figures))
    client = mlflow.MlflowClient()
    for path in sorted(folder.iterdir()):
        retry(client.log_artifact, parent, str(path), "report")
    return folder


def _summary(tuning, rows: list[dict], figures: list[Path]) -> str:
    search = tuning.search
    states = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    text = f"**{search.question or 'Search ' + search.name}**\n\n"
    text += f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    text += f" ({search.sampler} sampler, {search.pruner.kind} pruner).\n"
    complete = [r for r in rows if r["state"] == "complete" and r["val_acc"] is not None]
    if not complete:
        return text + "\nNo trial has completed yet.\n"
    best = max(complete, key=lambda r: (r["val_acc"], -r["trial"]))
    setting = {**search.fixed, **{k: best[k] for k in search.space}}
    command = "dvc exp run " + " ".join(f"-S {k}={yaml_value(v)}" for k, v in setting.items())
    text += (
        f"\nBest: trial {best['trial']}, validation accuracy {best['val_acc']:.4f}, "
        f"test accuracy {best['test_acc']:.4f}, DVC experiment `{best['experiment']}` "
        f"(`dvc exp apply {best['experiment']}`). To run it again from the committed params:\n\n"
        f"```sh\n{command}\n```\n"
    )
    if figures:
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n"
    return text
