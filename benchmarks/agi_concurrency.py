"""C concurrent simulated calls against our FastAGI server and against pystrix's threaded one.

Run: ``.venv/bin/python benchmarks/agi_concurrency.py --calls 5000 --concurrency 5000``

Each server runs in its own process; this process plays Asterisk for every
call (the simulated channel over TCP) and times each AGI turn: from the moment
a reply is written to the moment the server's next command arrives, which is
the server's own latency. Both servers run the same command sequence (five GET
VARIABLEs, ANSWER, GET DATA, STREAM FILE, HANGUP); ours also writes every call
to a real SQLite store, which the baseline does not, so the ratio is
conservative. Figures are printed as ratios against the baseline measured in
the same run, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.simulated_asterisk import Caller, Press, run_call  # noqa: E402

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
server = FastAGIServer(interface="127.0.0.1", port=int(sys.argv[1]))
server.register_script_handler(re.compile("postcall"), postcall)
print("ready", flush=True)
server.serve_forever()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def start_ours(port: int, home: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(home))
    env.pop("DATABASE_URL", None)
    cli = str(Path(sys.executable).with_name("hotline-eval"))
    subprocess.run([cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    return subprocess.Popen([cli, "agi", "--listen", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_baseline(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BASELINE, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def load(port: int, calls: int, concurrency: int) -> dict[str, float]:
    gate = asyncio.Semaphore(concurrency)
    turns: list[float] = []
    failed = 0

    async def one(n: int) -> None:
        nonlocal failed
        async with gate:
            result = await run_call("127.0.0.1", port, Caller([Press("1")], variables=VARIABLES),
                                    uniqueid=f"{int(time.time())}.{n}", timeout=300)
        if result.error or not result.closed_by_server:
            failed += 1
        turns.extend(result.turn_seconds[1:])  # [0] includes accept and the environment block

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(calls)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(turns, n=100) if len(turns) > 1 else [0.0] * 99
    return {"calls_per_s": calls / elapsed, "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000,
            "failed": failed, "seconds": elapsed}


def measure(name: str, server: subprocess.Popen[bytes], port: int, calls: int, concurrency: int) -> dict[str, float]:
    try:
        wait_for_port(port)
        figures = asyncio.run(load(port, calls, concurrency))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{name:<22} {figures['calls_per_s']:>9.0f} calls/s  turn p50 {figures['p50_ms']:7.2f} ms  "
          f"p99 {figures['p99_ms']:7.2f} ms  failed {int(figures['failed'])}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{args.calls} calls, {args.concurrency} at once, {os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        ours = measure("hotline-eval (asyncio)", start_ours(port, Path(home)), port, args.calls, args.concurrency)
    port = free_port()
    base = measure("pystrix (threads)", start_baseline(port), port, args.calls, args.concurrency)
    print(f"ratio ours/baseline: throughput x{ours['calls_per_s'] / base['calls_per_s']:.2f}, "
          f"p50 turn x{ours['p50_ms'] / max(base['p50_ms'], 1e-9):.2f}, "
          f"p99 turn x{ours['p99_ms'] / max(base['p99_ms'], 1e-9):.2f} (below 1 is faster)")


if __name__ == "__main__":
    main()
