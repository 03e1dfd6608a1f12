"""A search's figures, drawn by Optuna's matplotlib visualisations: the optimisation
history, the parameters' importances and their parallel coordinates."""

import warnings
from pathlib import Path

from cnnpipe.plots import save

FIGURES = ("history.png", "importances.png", "parallel.png")


def search_pngs(study, folder: Path) -> list[Path]:
    """The figures that the search's finished trials allow (importances need two complete
    trials and a parameter that varies); returns the paths written."""
    import optuna
    from optuna.visualization import matplotlib as views

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    drawers = {"history.png": views.plot_optimization_history}
    if len(complete) >= 2:
        drawers["importances.png"] = views.plot_param_importances
        drawers["parallel.png"] = views.plot_parallel_coordinate
    written = []
    with warnings.catch_warnings():
        # Optuna marks its matplotlib views experimental; they have been for years.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, draw in drawers.items():
            try:
                ax = draw(study, target_name="best validation accuracy")
            except (ValueError, RuntimeError):  # e.g. no parameter varies: no importances
                continue
            figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            figure.set_size_inches(8, 5)
            save(figure, folder / name)
            written.append(folder / name)
    return written
