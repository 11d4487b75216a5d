"""C concurrent simulated calls against our FastAGI server and against pystrix's threaded one.

Run: ``.venv/bin/python benchmarks/agi_concurrency.py --calls 15000 --concurrency 5000``

``--before REF`` also runs the server of an earlier commit (a git worktree of REF, the same venv) on
the same load, and prints what this one costs against it: by default the last commit whose writer kept
a rating in memory and thanked the caller at once, so the line says what a rating on disk before the
thanks (the journal's group-committed fsync) costs in p99 turn and CPU per call.

Each server runs in its own process. Asterisk is played by ``--load-processes``
other processes (the simulated channel over TCP): every prompt plays for the
length of the built sound file (``--time-scale 1``), so 5,000 calls are really
in progress at once, as on a hotline's busy hour, rather than a saturation test
whose latency is only queueing. Each AGI turn is timed from the moment a reply
is written to the moment the server's next command arrives, which is the
server's own latency (plus the load process's, the same for both servers).
Callers arrive at random (Poisson) at the rate that keeps ``--concurrency``
calls in progress, as callers do, whatever the server does with earlier calls.

Both servers get the same callers, who press a key during the menu, and run
the same command sequence (variables, ANSWER, GET DATA menu, STREAM FILE
thanks, HANGUP); ours also writes every call to a real SQLite store, which the
baseline does not, and afterwards the store is checked call by call. Figures
are printed as ratios against the baseline measured in the same run, because
the machines are shared and noisy; the server's CPU seconds per 1,000 calls
are read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from ivr.prompts import sound_lengths
from rating_core.store.database import make_engine
from rating_core.store.models import Call, Rating
from simulators.asterisk_agi import Caller, Press, run_call

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose writer kept a rating in memory and thanked the caller at once (issue 17).
BEFORE = "fd2f4b8"
MENU, THANKS = "hotline-eval/12345/menu", "hotline-eval/12345/thanks"
VARIABLES = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询", "EVAL_CASE": "GD1", "EVAL_UNIT": "市人社局",
             "EVAL_LINKEDID": "1.1"}

BASELINE = r'''
import re, sys, threading
from pystrix.agi import FastAGIServer
from pystrix.agi.core import Answer, GetData, GetVariable, Hangup, StreamFile

def postcall(agi, args, kwargs, match, path):
    for name in ("EVAL_AGENT", "EVAL_QUEUE", "EVAL_CASE", "EVAL_UNIT", "EVAL_LINKEDID"):
        agi.execute(GetVariable(name))
    agi.execute(Answer())
    agi.execute(GetData("hotline-eval/12345/menu", 6000, 1))
    agi.execute(StreamFile("hotline-eval/12345/thanks", ""))
    try:
        agi.execute(Hangup())
    except Exception:
        pass

FastAGIServer.request_queue_size = 8192
threading.stack_size(256 * 1024)
server = FastAGIServer(interface="127.0.0.1", port=int(sys.argv[1]))
server.register_script_handler(re.compile("postcall"), postcall)
print("ready", flush=True)
server.serve_forever()
'''


@dataclass
class Load:
    turns: list[float] = field(default_factory=list)
    failed: int = 0
    peak: int = 0
    errors: list[str] = field(default_factory=list)
    cpu: float = 0.0  # the load process's own CPU seconds: on a 2-core box it shares the cores with the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children (ours: the store process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields 14 and 15 of the man page
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return own + sum(cpu_seconds(child) for child in children)


def start_ours(port: int, home: Path, code: Path = ROOT) -> subprocess.Popen[bytes]:
    """``hotline-eval agi`` of the code at ``code`` (this checkout, or a worktree of an earlier commit)."""
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(home), PYTHONPATH=str(code))
    env.pop("DATABASE_URL", None)
    cli = [sys.executable, "-m", "hotline_eval"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=code)
    return subprocess.Popen([*cli, "agi", "--listen", f"127.0.0.1:{port}", "--audiosocket", "127.0.0.1:0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"), cwd=code)


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """The code of commit ``ref``, checked out beside this one for the length of the run."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                       capture_output=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def start_baseline(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BASELINE, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def play(port: int, first: int, calls: int, concurrency: int, time_scale: float, tag: str) -> Load:
    """One load process: ``calls`` calls arriving at random, at a rate that keeps ``concurrency`` in progress."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    return asyncio.run(_play(port, first, calls, concurrency, time_scale, tag))


async def _play(port: int, first: int, calls: int, concurrency: int, time_scale: float, tag: str) -> Load:
    sounds = sound_lengths()
    rng = random.Random(first)
    load = Load()
    active = 0
    # Open loop, as on a hotline: callers arrive on their own (Poisson), not when an earlier call ends. A closed
    # loop would start a wave of calls each time a group commit lets a wave end, and time its own waves.
    seconds_per_call = max((sounds[MENU] / 2 + sounds[THANKS]) * time_scale, 0.01)
    rate = concurrency / seconds_per_call
    loop = asyncio.get_running_loop()
    start = loop.time()
    arrivals = [start]
    for _ in range(calls - 1):
        arrivals.append(arrivals[-1] + rng.expovariate(rate))

    async def one(n: int) -> None:
        nonlocal active
        await asyncio.sleep(max(0.0, arrivals[n - first] - loop.time()))
        active += 1
        load.peak = max(load.peak, active)
        caller = Caller([Press(rng.choice("12"))], callerid=f"13{n:09d}", variables=VARIABLES)
        result = await run_call("127.0.0.1", port, caller, uniqueid=f"{tag}.{n}", time_scale=time_scale,
                                sounds=sounds, timeout=600)
        active -= 1
        if result.error or not result.closed_by_server:
            load.failed += 1
            load.errors.append(f"{result.uniqueid}: {result.error or 'not closed by the server'}")
        load.turns.extend(result.turn_seconds[1:])  # [0] includes accept and the environment block

    await asyncio.gather(*(one(n) for n in range(first, first + calls)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    load.cpu = usage.ru_utime + usage.ru_stime
    return load


def measure(name: str, server: subprocess.Popen[bytes], port: int, args: argparse.Namespace,
            tag: str) -> dict[str, float]:
    processes = args.load_processes
    try:
        wait_for_port(port)
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        share = args.calls // processes
        with ProcessPoolExecutor(processes) as pool:
            loads = list(pool.map(play, [port] * processes, [i * share for i in range(processes)], [share] * processes,
                                  [args.concurrency // processes] * processes, [args.time_scale] * processes,
                                  [tag] * processes))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    turns = [t for load in loads for t in load.turns]
    cuts = statistics.quantiles(turns, n=1000) if len(turns) > 1 else [0.0] * 999
    calls = share * processes
    figures = {"calls": calls, "calls_per_s": calls / elapsed, "p50_ms": cuts[499] * 1000, "p99_ms": cuts[989] * 1000,
               "p999_ms": cuts[998] * 1000, "failed": sum(load.failed for load in loads),
               "peak": sum(load.peak for load in loads), "cpu_per_1000": cpu / calls * 1000, "turns": len(turns),
               "load_cpu_share": sum(load.cpu for load in loads) / elapsed / (os.cpu_count() or 1),
               "server_cpu_share": cpu / elapsed / (os.cpu_count() or 1)}
    print(f"{name:<22} {figures['calls_per_s']:>7.1f} calls/s  peak {figures['peak']:>5} at once  "
          f"turn p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:7.2f} ms  p99.9 {figures['p999_ms']:7.2f} ms  "
          f"server CPU {figures['cpu_per_1000']:5.2f} s/1000 calls  failed {int(figures['failed'])}")
    for error in [e for load in loads for e in load.errors][:3]:
        print(f"{'':<22} failed: {error}")
    print(f"{'':<22} CPU busy: server {figures['server_cpu_share']:.0%}, "
          f"load processes {figures['load_cpu_share']:.0%} of the machine")
    return figures


def check_store(home: Path, tag: str, expected: int) -> None:
    engine = make_engine(f"sqlite:///{home / 'hotline-eval.db'}")
    with engine.connect() as db:
        calls = db.scalar(select(func.count()).select_from(Call).where(Call.uniqueid.like(f"{tag}.%")))
        rated = db.scalar(select(func.count()).select_from(Rating).join(Call).where(Call.uniqueid.like(f"{tag}.%")))
    engine.dispose()
    print(f"store: {calls} of {expected} calls, {rated} rated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=15000)
    parser.add_argument("--concurrency", type=int, default=5000)
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="prompts play for this share of their real length (0: replies at once)")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--before", default=BEFORE, metavar="REF",
                        help="also run the server of this commit (a worktree) and compare; '' to skip")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    print(f"{args.calls} calls, {args.concurrency} at once, prompts at x{args.time_scale} of their length, "
          f"{os.cpu_count()} CPU(s)")
    tag = f"bench{int(time.time())}"
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        ours = measure("hotline-eval (asyncio)", start_ours(port, Path(home)), port, args, tag)
        check_store(Path(home), tag, int(ours["calls"]))
    if args.before:
        with tempfile.TemporaryDirectory() as home, worktree(args.before) as code:
            port = free_port()
            before = measure(f"before ({args.before[:10]})", start_ours(port, Path(home), code), port, args, tag)
            check_store(Path(home), tag, int(before["calls"]))
        print(f"ratio ours/before: p99 turn x{ours['p99_ms'] / max(before['p99_ms'], 1e-9):.2f}, "
              f"p50 turn x{ours['p50_ms'] / max(before['p50_ms'], 1e-9):.2f}, "
              f"server CPU per call x{ours['cpu_per_1000'] / max(before['cpu_per_1000'], 1e-9):.2f} "
              f"(the cost of a rating on disk before the thanks; below 1 is cheaper)")
    if args.skip_baseline:
        return
    port = free_port()
    base = measure("pystrix (threads)", start_baseline(port), port, args, tag)
    print(f"ratio ours/baseline: throughput x{ours['calls_per_s'] / base['calls_per_s']:.2f}, "
          f"p50 turn x{ours['p50_ms'] / max(base['p50_ms'], 1e-9):.2f}, "
          f"p99 turn x{ours['p99_ms'] / max(base['p99_ms'], 1e-9):.2f}, "
          f"server CPU per call x{ours['cpu_per_1000'] / max(base['cpu_per_1000'], 1e-9):.2f} (below 1 is better)")


if __name__ == "__main__":
    main()
