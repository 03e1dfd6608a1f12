"""Downloads that fail in seconds, not never, on a machine without internet."""

import contextlib
import socket

TIMEOUT = 10  # seconds a silent network gets before a download is given up


@contextlib.contextmanager
def socket_timeout(seconds: float = TIMEOUT):
    """torchvision and torch.hub open URLs without a timeout: a network that drops
    packets would hang the stage forever. A default timeout turns that into an error."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)
