"""Stage: k-fold cross-validation (split.folds > 1). One network per fold, trained on the
other folds with the train stage's recipe, scored on its own; the folds' scores and their
mean and standard deviation go to metrics/ and, as nested runs, to MLflow.

Each fold's score is its best epoch's val accuracy, the epoch picked on that same fold as
the train stage picks its checkpoint: slightly optimistic, alike for every configuration
compared. The folds train one after another; with `train.nproc: N` each fold trains with
DistributedDataParallel on N processes, as the train stage does, and rank 0 alone logs
and writes.
"""

import numpy as np

from cnnpipe import paths
from cnnpipe.config import load_params
from cnnpipe.errors import exit_on_error
from cnnpipe.files import write_json

RESULT = paths.CROSSVAL_METRICS


@exit_on_error
def main():
    params = load_params()
    k = params.split.folds
    if k <= 1:
        write_json(RESULT, {"folds": k})
        print("split.folds is 1: no cross-validation")
        return
    # Training needs torch, and tracking MLflow: imported only when there are folds to
    # train, so the stage costs nothing without them.
    import torch

    from cnnpipe import distributed, recipe
    from cnnpipe.data.prepared import load_prepared
    from cnnpipe.data.split import fold_indices, load_folds
    from cnnpipe.device import seed_everything
    from cnnpipe.engine import fit
    from cnnpipe.tracking.run import continue_run

    process = distributed.start(params.train, __file__)
    device, rank, world, main_process = process.device, process.rank, process.world, process.main
    data, folds = load_prepared(paths.PREPARED), load_folds(paths.FOLDS)

    results = {}
    with continue_run(params, active=main_process) as run:
        for fold in range(1, k + 1):
            seed_everything(params.seed)
            train_idx, val_idx = fold_indices(folds, fold - 1)
            train, val, _, engine = recipe.training(
                params, data, train_idx, val_idx, device, world, main_process and fold == 1
            )
            with run.nested(f"fold {fold}", params, fold=fold) as fold_run:
                fitted = fit(
                    engine, train, val, params, on_epoch=fold_run.log_epoch, rank=rank, world=world
                )
                best = fitted.best
                results[f"fold_{fold}"] = {"val_acc": best["val_acc"], "best_epoch": best["epoch"]}
                fold_run.log_metrics({"best_val_acc": best["val_acc"]})
            if main_process:
                print(
                    f"fold {fold}/{k}: val accuracy {best['val_acc']:.4f} (epoch {best['epoch']})"
                )
            # The next fold's data placement looks at free GPU memory: free this one's.
            del train, val, engine
            if device.type == "cuda":
                torch.cuda.empty_cache()

        scores = np.array([r["val_acc"] for r in results.values()])
        summary = {"mean": float(scores.mean()), "std": float(scores.std())}
        run.log_metrics({"cv_val_acc_mean": summary["mean"], "cv_val_acc_std": summary["std"]})
    if main_process:
        write_json(RESULT, {"folds": k, "val_acc": summary, **results})
        print(
            f"{k}-fold val accuracy {summary['mean']:.4f} ± {summary['std']:.4f}, "
            f"{world} process(es) a fold"
        )
    distributed.teardown()


if __name__ == "__main__":
    main()
