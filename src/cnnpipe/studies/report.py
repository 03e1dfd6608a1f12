"""A study's report: results.csv and results.md (final metrics per setting), curves.png
(validation curves) and summary.md (the question and the best setting)."""

from dataclasses import dataclass
from pathlib import Path

from cnnpipe.files import write_csv, write_text
from cnnpipe.studies.spec import Study
from cnnpipe.tracking.store import retry

REPORTS = "reports"


@dataclass
class Result:
    label: str
    run: object | None  # the newest MLflow run with these params, or None


def write_report(study: Study, results: list[Result], folder: Path) -> None:
    import mlflow

    from cnnpipe.plots.study import study_curves_png

    client = mlflow.MlflowClient()
    rows, curves = [], {}
    for result in results:
        run = result.run
        row = {"setting": result.label, "status": "no run" if run is None else run.info.status}
        if run is not None:
            metrics = run.data.metrics
            row |= {
                "test_acc": metrics.get("test_acc"),
                "best_val_acc": metrics.get("best_val_acc"),
                "best_epoch": metrics.get("best_epoch"),
                "train_seconds": metrics.get("train_seconds"),
                "error": run.data.tags.get("error", ""),
            }
            history = {}
            for key in ("val_loss", "val_acc"):
                for m in retry(client.get_metric_history, run.info.run_id, key):
                    history.setdefault(m.step, {"epoch": m.step})[key] = m.value
            curves[result.label] = [history[e] for e in sorted(history) if len(history[e]) == 3]
        rows.append(row)
    columns = [
        "setting",
        "status",
        "test_acc",
        "best_val_acc",
        "best_epoch",
        "train_seconds",
        "error",
    ]
    rows = [{c: row.get(c, "") for c in columns} for row in rows]
    write_csv(folder / "results.csv", rows)
    write_text(folder / "results.md", markdown_table(rows, columns[:-1]))
    study_curves_png(curves, study.question or f"study {study.name}", folder / "curves.png")
    write_text(folder / "summary.md", _summary(study, rows))


FORMATS = {
    "test_acc": "{:.4f}",
    "best_val_acc": "{:.4f}",
    "best_epoch": "{:.0f}",
    "train_seconds": "{:.1f}",
    # a search's trials
    "val_acc": "{:.4f}",
    "seconds": "{:.1f}",
    "epochs": "{:.0f}",
}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [
            FORMATS[c].format(row[c])
            if c in FORMATS and row[c] not in ("", None)
            else str(row[c] if row[c] is not None else "")
            for c in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _summary(study: Study, rows: list[dict]) -> str:
    scored = [r for r in rows if r["status"] == "FINISHED" and r["test_acc"] not in ("", None)]
    failed = [r["setting"] for r in rows if r["status"] == "FAILED"]
    text = f"**{study.question or study.name}** "
    if not scored:
        return text + "No experiment of this study finished.\n"
    top = max(r["test_acc"] for r in scored)
    best = [r for r in scored if r["test_acc"] == top]
    worst = min(scored, key=lambda r: r["test_acc"])
    if len(best) == 1:
        text += (
            f"Of {len(rows)} settings, {best[0]['setting']} reached the best test accuracy, "
            f"{top:.4f} (best validation epoch {best[0]['best_epoch']:.0f})"
        )
    else:
        names = ", ".join(r["setting"] for r in best)
        text += f"Of {len(rows)} settings, {names} share the best test accuracy, {top:.4f}"
    if worst["test_acc"] < top:
        text += f"; {worst['setting']} scored lowest, {worst['test_acc']:.4f}"
    text += "."
    if failed:
        text += f" Failed (see the runs' error tag): {', '.join(failed)}."
    return text + "\n"
