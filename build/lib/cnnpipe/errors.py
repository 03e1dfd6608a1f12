"""One error type for problems a user can fix, and the way stages report it."""

import functools
import sys


class CnnpipeError(Exception):
    """Bad input or configuration: shown to the user as one line, without a traceback."""


def exit_on_error(main):
    """Run a stage's main(); a CnnpipeError becomes `error: ...` on stderr and exit code 1."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except CnnpipeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)

    return wrapper
