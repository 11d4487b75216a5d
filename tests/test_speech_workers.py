"""Speech worker processes end with the server that started them, however the server ends.

A worker holds its models (hundreds of MB); a server killed with SIGKILL never tells it to stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from waiting import HANG, wait_until

# A stand-in server: starts a real pool (no models: the workers load none and are ready at once),
# says its workers' pids, then waits to be killed.
SERVER = """
import multiprocessing, sys
from ivr.speech_workers import RecognizerPool

pool = RecognizerPool({}, {}, workers=2)
pool.start()
print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
sys.stdin.read()
"""


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped (the container's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def test_workers_exit_when_the_server_is_killed() -> None:
    # Popen, not asyncio's subprocesses: on 3.11 their wait() also waits for the pipes to close, and
    # the workers inherit the server's stdout.
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    workers: list[int] = []
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), HANG)
        workers = [int(pid) for pid in line.split()]
        assert len(workers) == 2 and not any(map(gone, workers))
        server.kill()
        server.wait(HANG)
        await wait_until(lambda: all(map(gone, workers)), HANG,
                         explain=lambda: f"still running: {[pid for pid in workers if not gone(pid)]}")
    finally:
        server.kill()
        server.wait(HANG)
        for pid in workers:  # only after a failure: these are the processes this test started
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        for pipe in (server.stdin, server.stdout):
            if pipe is not None:
                pipe.close()
