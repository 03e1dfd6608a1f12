"""Stage 3: train the configured network; keep the weights of the best validation epoch.

Under `train.nproc: N` (or `torchrun --nproc_per_node=N stages/train.py`) it trains with
DistributedDataParallel; rank 0 alone logs and writes. After each epoch but the last the
whole training state is saved to RESUME_FILE, so a killed run continues where it stopped.
"""

import hashlib
import sys
import time
from pathlib import Path

from cnnpipe import distributed, paths, recipe
from cnnpipe.checkpoint import save_spec, save_weights
from cnnpipe.config import load_params
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.device import seed_everything
from cnnpipe.engine import fit
from cnnpipe.errors import exit_on_error
from cnnpipe.files import write_csv, write_json, write_text
from cnnpipe.progress import say
from cnnpipe.pruning import trial_of_this_experiment
from cnnpipe.resume import fingerprint, load_resume
from cnnpipe.summary import format_table, layer_rows, summarize, title
from cnnpipe.tracking.run import start_run

RESUME_FILE = Path(paths.TRAINING_STATE)


@exit_on_error
def main():
    params = load_params()
    cfg = params.train
    process = distributed.start(cfg, __file__)
    device, rank, world, main_process = process.device, process.rank, process.world, process.main
    seed_everything(params.seed)

    # Data, normalised with the mean and std of the training split only; the model, its
    # optimiser, schedule and loss.
    data, split = load_prepared(paths.PREPARED), load_split(paths.SPLIT)
    train, val, spec, engine = recipe.training(
        params, data, split["train"], split["val"], device, world, verbose=main_process
    )
    summary = summarize(engine.module, spec.in_channels, spec.image_size)
    heading = title(spec.model, spec.variant, spec.in_channels, spec.image_size)

    # A training state is resumed only if it comes from these same params and data.
    run_key = fingerprint(params, data.labels, split, data.images.shape, world)
    resume = load_resume(RESUME_FILE, run_key, device) if cfg.resume else None
    # Under `cnnpipe tune` each epoch is reported to the search, whose pruner may stop a
    # poor trial early (one process: the ranks of DDP would have to agree to stop).
    trial = trial_of_this_experiment() if world == 1 else None

    # Epochs, tracked in MLflow as they finish.
    run_id = resume["run_id"] if resume else None
    with start_run(params, run_id=run_id, active=main_process) as run:
        if resume and main_process:
            print(f"resuming after epoch {len(resume['history'])} from {RESUME_FILE}")
            run.log_missing_epochs(resume["history"])
        elif main_process:
            bad_files = len(data.report.get("bad_files", []))
            run.log_metrics({"data_images": len(data.labels), "data_bad_files": bad_files})
            run.log_files(paths.PREPARE_REPORT, folder="data")
            run.log_datasets(params.data.source, split, len(data.classes))
        state_file = None
        if main_process and cfg.resume:
            extra = {"fingerprint": run_key, "run_id": run.id}
            state_file = (RESUME_FILE, extra)
        start = time.perf_counter()
        fitted = fit(
            engine,
            train,
            val,
            params,
            resume=resume,
            state_file=state_file,
            on_epoch=run.log_epoch,
            stop=trial.report if trial else None,
            rank=rank,
            world=world,
        )
        seconds = time.perf_counter() - start
        history, best = fitted.history, fitted.best
        scores = {"best_epoch": best["epoch"], "best_val_acc": best["val_acc"]}
        if trial and trial.pruned:
            scores["pruned_after_epoch"] = len(history)
            say(f"trial {trial.number} pruned after epoch {len(history)} of {params.epochs}")
        weights = hashlib.sha256(
            b"".join(v.cpu().numpy().tobytes() for v in engine.module.state_dict().values())
        ).hexdigest()[:16]
        say(f"rank {rank}/{world}: final weights {weights}")

        if main_process:
            # The seconds go to MLflow only: the committed metrics stay the same run to run.
            run.log_metrics(scores | {"train_seconds": seconds})
            # Save: the best weights, how to rebuild them, the curves and the layer table.
            save_weights(fitted.state, paths.BEST_WEIGHTS)
            save_spec(spec, paths.MODEL_SPEC)
            write_csv(paths.HISTORY, history)
            write_json(paths.TRAIN_METRICS, scores)
            write_text(paths.MODEL_SUMMARY_TEXT, format_table(summary, heading))
            write_csv(paths.MODEL_SUMMARY_TABLE, layer_rows(summary))
            run.log_files(paths.HISTORY, folder="train")
            run.log_files(paths.MODEL_SUMMARY_TEXT, paths.MODEL_SUMMARY_TABLE, folder="model")
            RESUME_FILE.unlink(missing_ok=True)
            print(f"best epoch {best['epoch']}: val accuracy {best['val_acc']:.4f} on {device}")
            if best["val_acc"] <= 1.5 / len(data.classes):
                # A run that ends where guessing would is worth a word, not a failure.
                print(
                    f"warning: val accuracy {best['val_acc']:.4f} is about chance for "
                    f"{len(data.classes)} classes: the network has not learned (try another "
                    "lr, optimizer or net.init, or more epochs)",
                    file=sys.stderr,
                )
    distributed.teardown()


if __name__ == "__main__":
    main()
