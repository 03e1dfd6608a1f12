"""Stage 0: check params.yaml before any other stage runs.

DVC deletes a stage's outputs just before it runs that stage, so a bad value that prepare
or train found itself would cost the last good results with it. Found here, upstream of
every stage, it stops the pipeline with all of them in place. What it writes never
changes, so a good change of params re-runs only the stages that read it.
"""

from cnnpipe import paths
from cnnpipe.config import load_params
from cnnpipe.data.sources import check_source
from cnnpipe.errors import exit_on_error
from cnnpipe.files import write_json


@exit_on_error
def main():
    params = load_params()
    check_source(params.data)
    write_json(paths.PARAMS_CHECKED, {"params.yaml": "valid"})


if __name__ == "__main__":
    main()
