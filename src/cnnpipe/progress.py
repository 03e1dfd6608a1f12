"""How a run reports progress: bars on a terminal only, plain lines everywhere."""

import os
import sys


def quiet() -> bool:
    """No progress bars under CI or into a log file (dvc queue logs), where they are noise."""
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def say(line: str) -> None:
    """Print one line in one write, flushed at once.

    print() writes the text and its newline separately; under torchrun every rank
    shares stdout, and another rank's line could land in between.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
