"""When to show progress bars: on a terminal, never under CI or in a log file."""

import os
import sys


def quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()
