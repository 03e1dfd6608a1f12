"""Stage 2: a stratified train/val/test split, saved as index files under data/split/."""

from cnnpipe.config import load_params
from cnnpipe.data.prepared import load_prepared
from cnnpipe.data.split import save_split, stratified_split
from cnnpipe.errors import exit_on_error


@exit_on_error
def main():
    params = load_params()
    labels = load_prepared("data/prepared").labels
    cfg = params.split
    split = stratified_split(labels, cfg.val, cfg.test, params.seed, cfg.fraction)
    save_split("data/split", split)
    print(", ".join(f"{name}: {len(idx)}" for name, idx in split.items()))


if __name__ == "__main__":
    main()
