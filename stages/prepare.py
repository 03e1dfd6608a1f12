"""Stage 1: turn the configured data source into the prepared format under data/prepared/."""

from cnnpipe.config import load_params
from cnnpipe.data.prepared import save_prepared
from cnnpipe.data.sources import load_source
from cnnpipe.errors import exit_on_error


@exit_on_error
def main():
    params = load_params()
    images, labels, classes = load_source(params.data)
    save_prepared("data/prepared", images, labels, classes)
    print(f"prepared {len(images)} images of {images.shape[1:]} in {len(classes)} classes")


if __name__ == "__main__":
    main()
