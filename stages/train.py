"""Stage 3: train the configured network; keep the weights of the best validation epoch.

Under `train.nproc: N` (or `torchrun --nproc_per_node=N stages/train.py`) it trains with
DistributedDataParallel; rank 0 alone logs and writes. After each epoch the whole training
state is saved to RESUME_FILE, so a killed run continues where it stopped.
"""

import hashlib
import time
from pathlib import Path

from cnnpipe import distributed, recipe, tracking
from cnnpipe.checkpoint import save_spec, save_weights
from cnnpipe.config import load_params
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import load_split
from cnnpipe.device import resolve_device, seed_everything, set_deterministic
from cnnpipe.engine import fit
from cnnpipe.errors import exit_on_error
from cnnpipe.files import write_csv, write_json, write_text
from cnnpipe.plots import curves_png
from cnnpipe.progress import say
from cnnpipe.resume import fingerprint, load_resume
from cnnpipe.summary import format_table, layer_rows, summarize, title

RESUME_FILE = Path("models/train_state.pt")


@exit_on_error
def main():
    params = load_params()
    cfg = params.train
    if cfg.nproc > 1 and not distributed.under_torchrun():
        distributed.relaunch(cfg.nproc, __file__)
    device = resolve_device(cfg.device)
    set_deterministic(cfg.deterministic, device)
    rank, world = distributed.setup(device)
    device = distributed.local_device(device)
    main_process = rank == 0
    seed_everything(params.seed)

    # Data, normalised with the mean and std of the training split only; the model, its
    # optimiser, schedule and loss.
    data, split = load_prepared("data/prepared"), load_split("data/split")
    train, val, spec, engine = recipe.training(
        params, data, split["train"], split["val"], device, world, verbose=main_process
    )
    summary = summarize(engine.module, spec.in_channels, spec.image_size)
    heading = title(spec.model, spec.variant, spec.in_channels, spec.image_size)

    # A checkpoint is resumed only if it comes from these same params and data.
    run_key = fingerprint(params, data.labels, split, data.images.shape, world)
    resume = load_resume(RESUME_FILE, run_key, device) if cfg.resume else None

    # Epochs, tracked in MLflow as they finish.
    run_id = resume["run_id"] if resume else None
    with tracking.start_run(params, run_id=run_id, active=main_process) as run:
        if resume and main_process:
            print(f"resuming after epoch {len(resume['history'])} from {RESUME_FILE}")
            run.log_missing_epochs(resume["history"])
        elif main_process:
            bad_files = len(data.report.get("bad_files", []))
            run.log_metrics({"data_images": len(data.labels), "data_bad_files": bad_files})
            run.log_files("data/prepared/report.json", folder="data")
            run.log_datasets(params.data.source, split, len(data.classes))
        checkpoint = None
        if main_process and cfg.resume:
            extra = {"fingerprint": run_key, "run_id": run.id}
            checkpoint = (RESUME_FILE, extra)
        start = time.perf_counter()
        fitted = fit(
            engine,
            train,
            val,
            params,
            resume=resume,
            checkpoint=checkpoint,
            on_epoch=run.log_epoch,
            rank=rank,
            world=world,
        )
        seconds = time.perf_counter() - start
        history, best = fitted.history, fitted.best
        scores = {"best_epoch": best["epoch"], "best_val_acc": best["val_acc"]}
        weights = hashlib.sha256(
            b"".join(v.cpu().numpy().tobytes() for v in engine.module.state_dict().values())
        ).hexdigest()[:16]
        say(f"rank {rank}/{world}: final weights {weights}")

        if main_process:
            # The seconds go to MLflow only: the committed metrics stay the same run to run.
            run.log_metrics(scores | {"train_seconds": seconds})
            # Save: the best weights, how to rebuild them, the curves and the layer table.
            save_weights(fitted.state, "models/best.pth")
            save_spec(spec, "models/model.json")
            write_csv("metrics/history.csv", history)
            write_json("metrics/train.json", scores)
            curves_png(history, "metrics/curves.png")
            write_text("metrics/model_summary.txt", format_table(summary, heading))
            write_csv("metrics/model_summary.csv", layer_rows(summary))
            run.log_files("metrics/history.csv", "metrics/curves.png", folder="train")
            run.log_files("metrics/model_summary.txt", "metrics/model_summary.csv", folder="model")
            RESUME_FILE.unlink(missing_ok=True)
            print(f"best epoch {best['epoch']}: val accuracy {best['val_acc']:.4f} on {device}")
    distributed.teardown()


if __name__ == "__main__":
    main()
