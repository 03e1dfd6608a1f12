"""The train stage's link to a search trial (`cnnpipe tune`): report each epoch's
validation accuracy to the trial and stop early when its pruner says so.

`cnnpipe tune` starts the DVC queue workers with the search's storage and name in the
environment (as torchrun passes a rank); DVC names each experiment after its trial. A
plain `dvc repro` or `dvc exp run` has neither, finds no trial and trains every epoch, so
a finished trial's experiment is reproduced exactly by its params alone.
"""

import os
from dataclasses import dataclass

STORAGE_ENV = "CNNPIPE_TUNE_STORAGE"
SEARCH_ENV = "CNNPIPE_TUNE_SEARCH"
EXPERIMENT_ATTR = "dvc_experiment"  # a trial's user attribute: the experiment running it
PRUNER_ATTR = "pruner"  # the search's user attribute: its pruner's settings


@dataclass(frozen=True)
class PrunerSpec:
    """median: stop a trial whose accuracy is below the median of earlier trials at the
    same epoch; halving: successive halving (asynchronous, by epochs); none."""

    kind: str = "median"
    startup_trials: int = 2  # median: trials that finish before any is pruned
    warmup_epochs: int = 1  # median: epochs of each trial that are never pruned
    min_epochs: int = 1  # halving: epochs of the first rung
    reduction_factor: int = 3  # halving: one in this many trials goes on at each rung

    def build(self):
        import optuna  # only a search's trials need it

        if self.kind == "median":
            # Steps are epochs, counted from 1; Optuna prunes from step n_warmup_steps on.
            return optuna.pruners.MedianPruner(
                n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs + 1
            )
        if self.kind == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.min_epochs, reduction_factor=self.reduction_factor
            )
        return optuna.pruners.NopPruner()


class TrialLink:
    """One running trial: `report` gives it an epoch's validation accuracy and answers
    whether to stop there."""

    def __init__(self, trial):
        self.trial = trial
        self.number = trial.number
        self.pruned = False

    def report(self, row: dict) -> bool:
        self.trial.report(row["val_acc"], row["epoch"])
        self.pruned = self.trial.should_prune()
        return self.pruned


def trial_of_this_experiment() -> TrialLink | None:
    """The running trial that this DVC experiment is, or None outside a search."""
    storage, search = os.environ.get(STORAGE_ENV), os.environ.get(SEARCH_ENV)
    experiment = os.environ.get("DVC_EXP_NAME")
    if not (storage and search and experiment):
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The pruner is not kept in the storage: the search writes its settings there.
    store = optuna.storages.get_storage(storage)
    attrs = store.get_study_user_attrs(store.get_study_id_from_name(search))
    pruner = PrunerSpec(**attrs.get(PRUNER_ATTR, {"kind": "none"}))
    study = optuna.load_study(study_name=search, storage=store, pruner=pruner.build())
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if frozen.user_attrs.get(EXPERIMENT_ATTR) == experiment:
            return TrialLink(optuna.trial.Trial(study, frozen._trial_id))
    return None
