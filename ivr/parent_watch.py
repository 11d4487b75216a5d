"""Child processes that end the moment the server that started them is gone.

A server killed with SIGKILL never says "stop", and a child blocked on a queue, a pipe or a database
would outlive it, holding memory (a speech model: hundreds of MB) or a journal, for ever. The parent's
sentinel becomes readable when the parent dies, however it dies. Not prctl(PR_SET_PDEATHSIG): children
are started from threads, and that signal fires when the starting *thread* ends, not the process.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading


def exit_with_parent() -> None:
    """Watch the parent from a daemon thread, and end this process at once when it dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    threading.Thread(target=_wait_and_exit, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def _wait_and_exit(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)  # nobody is left to join this process, and a normal exit could block on queues' feeder threads
