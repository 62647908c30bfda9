"""How appsdk takes part in the ways a process ends: normal exit, SIGTERM, multiprocessing.

- Normal exit: ``atexit`` flushes and stops the pipeline within its deadline.
- SIGTERM (a container stop) skips ``atexit``. If the application installed no handler of its
  own, appsdk's handler stops the pipeline within the deadline (what cannot be sent is
  spooled) and then ends the process as SIGTERM would. If the application has a handler,
  appsdk flushes and then calls it; the application decides how to exit.
- Children started by ``multiprocessing`` with fork end with ``os._exit``, which skips
  ``atexit``: a multiprocessing finalizer registered in the child stops the pipeline there.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["install"]

_log = logging.getLogger("appsdk")
_installed = False
_stop: Callable[[], None] = lambda: None  # noqa: E731 - replaced by install()
_flush: Callable[[], None] = lambda: None  # noqa: E731


def install(stop: Callable[[], None], flush: Callable[[], None]) -> None:
    """Take part in exits once per process: ``stop`` shuts the pipeline down, ``flush`` exports.

    Called by ``configure()``; later calls only replace what is called.
    """
    global _installed, _stop, _flush
    _stop, _flush = stop, flush
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    _handle_sigterm()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_in_forked_child)


def _at_exit() -> None:
    _stop()


def _handle_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        _log.debug("appsdk: configure() ran outside the main thread; SIGTERM is not handled")
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):  # no signals here (a restricted runtime)
        return
    if previous is signal.SIG_IGN or previous is None:
        return  # the application chose to ignore it, or it was set outside Python

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            _flush()
            previous(signum, frame)
            return
        _stop()
        # End as SIGTERM would have: the exit status says "terminated by SIGTERM".
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


class _AfterFork:
    """multiprocessing keeps its after-fork hooks by weak reference: this one lives for ever."""


_AFTER_FORK = _AfterFork()


def _in_forked_child() -> None:
    # Only multiprocessing's children end through its _exit_function; a plain fork runs atexit.
    # The child clears its finalizers when it starts, then runs the after-fork hooks: register
    # the finalizer from one of those.
    util: Any = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(_AFTER_FORK, _register_finalizer)


def _register_finalizer(_: object) -> None:
    util: Any = sys.modules["multiprocessing.util"]
    util.Finalize(None, _at_exit, exitpriority=100)
