"""Ctrl-C during a search: the first SIGINT stops the running solves and asks the search to stop
and answer with the best mapping so far (status "interrupted", with its proven bound); a second
raises KeyboardInterrupt at once.

Only the main thread receives signals, so the handler is installed only when the search runs
there (a search in another thread stops at its time limit). The solvers run in worker threads
(formulation.backends), so the main thread stays free to run the handler while they search.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..formulation import backends


def requested() -> bool:
    """Has a Ctrl-C asked the running search to stop?"""
    return backends.STOP.requested


@contextmanager
def stop_on_sigint() -> Iterator[None]:
    """Within: SIGINT stops the search as the module docstring says. Nested uses share one handler."""
    if threading.current_thread() is not threading.main_thread() or _installed():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum, frame):
        if backends.STOP.requested:  # the second Ctrl-C: leave at once
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        backends.STOP.request()

    handle.meshmap_stop = True  # type: ignore[attr-defined]
    backends.STOP.clear()
    signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is handle:
            signal.signal(signal.SIGINT, previous)
        backends.STOP.clear()


def _installed() -> bool:
    return getattr(signal.getsignal(signal.SIGINT), "meshmap_stop", False)
