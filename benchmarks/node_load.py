"""The whole node under load: FastAGI servers, workers, the sweep, the dialer and the web tool, on PostgreSQL.

Run: ``.venv/bin/python benchmarks/node_load.py [--peak 200 --minutes 2 --levels 1,2,4]``
(quick: ``--peak 60 --minutes 0.5 --time-scale 0.2``).

Every process a centre runs is started as it runs it, each with its log under a temporary folder:
``hotline-eval agi`` (one, then two, each with its own spool), ``hotline-eval worker --queue callbacks``
(``--workers`` of them), ``hotline-eval dialer`` against the simulated Asterisk AMI (wired as the demo wires
it: its answered callbacks run ``callback-verify`` on the first FastAGI server, the citizens picking up by the
last digit of their number), the sweep ``rq cron`` runs every minute (a process calling it every
``--sweep-seconds``), and ``hotline-eval web`` (waitress) whose pages an agent and a supervisor read over
HTTP ``--page-reads`` times a second. They share a PostgreSQL database made for each run (a copy of one
migrated template, all dropped at the end) and a private ``redis-server``. The rules are the demo's (the
automated callback, calling around the clock), keys only.

Callers arrive at random (Poisson, open loop, as on a hotline) at 1×, 2× and 4× a stated peak
(``--peak`` calls a minute, ``--negative-share`` of them giving a 差评, the others the simulator's mix of
satisfied, silent and hanging-up callers) for ``--minutes``, spread round-robin over the servers; prompts
play for their real length times ``--time-scale``. Each level is played on one server (the baseline) and
on two, with the same callers arriving at the same moments.

Reported per run: the callers offered a second (those arriving in the window); calls/s completed (calls ended
by the server, over the span from the first arrival to the last hang-up, so a little under the offered rate
by the last calls' length); the p99 AGI turn (from a reply written by the simulated Asterisk to the server's next
command, while the caller is on the line, as ``agi_concurrency.py`` measures it); the p99 store lag (from the
rating's ``rated_at``, set when the server read the key, to the row being visible in PostgreSQL, polled every
50 ms, so to within that);
the callback backlog when the last call has ended (open 差评 tasks with no call yet placed: it grows with
the 差评 rate times the sweep interval, so growth beyond the load factor is what to look for); the CPU
seconds per completed call of the FastAGI servers (their store processes included) and of the node (every
process above; PostgreSQL and Redis not); the web pages' p95. Each is printed as a ratio to the
single-server 1× run of the same benchmark run, since the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import yaml
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine, exists, func, select, text
from sqlalchemy.engine import make_url

from agi_concurrency import free_port
from hotline_eval.demo_callbacks import ANSWERS, PICK_UP, SATISFIED, fastagi_context, write_demo_rules
from ivr.prompts import sound_lengths
from rating_core.complaints.task_states import OPEN_TASK_STATES
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules, parse_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import CallbackAttempt, CallbackTask, Rating
from simulators.asterisk_agi import Press, Reaction, run_call
from simulators.asterisk_ami import SimulatedAsterisk
from simulators.callers import CALLER_MIX, SimulatedCall, make_caller
from web.accounts import create_user

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "postgresql+psycopg://postgres:postgres@127.0.0.1:5432/hotline_eval_test"
NEGATIVE_KINDS = ("dissatisfied_with_message", "dissatisfied_no_message", "hangup_after_rating")
HOTLINES = ("12345", "12333")
PASSWORD = "benchmark-password-1"
SEED = 23
POLL_SECONDS = 0.05
# Ratings may be committed out of id order by two servers' store processes: each poll looks this far back.
POLL_OVERLAP = 500
SETTLE_SECONDS = 30  # after the load, how long the last ratings may take to be seen before the run says so
# What `rq cron` runs every minute, as a process of its own that calls it every argv[1] seconds.
SWEEP = """
import sys, time
from callback.jobs import sweep_due
while True:
    sweep_due()
    time.sleep(float(sys.argv[1]))
"""


# -- the store and Redis ------------------------------------------------------------------------


class Databases:
    """A migrated template database, with the web tool's users, and a copy of it per run; all dropped at the end."""

    def __init__(self, server_url: str, home: Path) -> None:
        self.url = make_url(server_url)
        self.admin = make_engine(self.url.set(database="postgres").render_as_string(hide_password=False)
                                 ).execution_options(isolation_level="AUTOCOMMIT")
        self.prefix = f"node_load_{os.getpid()}"
        self.made: list[str] = []
        self.template = self._create(f"{self.prefix}_template")
        engine = make_engine(self.url_of(self.template))
        upgrade(engine)
        with RatingStore(engine, parse_rules(keys_only_rules(home))).sessions.begin() as session:
            create_user(session, "agent", PASSWORD, "agent", "坐席", agent_id="1007")
            create_user(session, "boss", PASSWORD, "supervisor", "主管")
        engine.dispose()  # a template takes no connections while it is copied

    def _create(self, name: str, template: str | None = None) -> str:
        with self.admin.connect() as db:
            db.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        self.made.append(name)
        return name

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def fresh(self, run: str) -> str:
        return self.url_of(self._create(f"{self.prefix}_{run}", self.template))

    def drop_all(self) -> None:
        with self.admin.connect() as db:
            for name in reversed(self.made):
                db.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of the benchmark's own, nothing saved. On a TCP port: the web tool's sign-in throttle
    (``limits``) takes no ``unix://`` URL."""
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server not found (Debian: apt-get install redis-server)")
    port = free_port()
    child = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                Redis.from_url(url).ping()
                break
            except RedisError:
                if time.monotonic() > deadline or child.poll() is not None:
                    sys.exit("the benchmark's redis-server did not start")
                time.sleep(0.05)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


def keys_only_rules(home: Path) -> dict[str, Any]:
    """The demo's rules (automated callbacks around the clock, recordings under ``home``), speech off: no models
    to load. Written to ``home/demo-rules.yaml``."""
    path = write_demo_rules(home)
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for section in document["hotlines"].values():
        section["speech"] = {"language": None}
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return document


# -- the node's processes -----------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children (an RQ worker forks one per job) and its live ones."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # fields 14–17 of proc(5)
        children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                    for c in (task / "children").read_text().split()]
    except OSError:
        return 0.0  # ended meanwhile (a work horse)
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return own + sum(process_cpu(child) for child in children)


@dataclass
class Node:
    """One run's processes, started as a centre's service units start them."""

    home: Path
    env: dict[str, str]
    servers: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # by pid: the log each process writes
    web_port: int = 0
    dialer: subprocess.Popen[bytes] | None = None

    def _start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.home / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(command, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                       start_new_session=True)  # a Ctrl-C reaches the benchmark, which stops them
        self.names[process.pid] = name
        return process

    def cli(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._start(name, [sys.executable, "-m", "hotline_eval", *args], env)

    def start_server(self, n: int) -> None:
        port = free_port()
        spool = self.home / f"spool-{n}"  # each server its own journal, as on hosts of their own
        process = self.cli(f"agi-{n}", "agi", "--listen", f"127.0.0.1:{port}", "--audiosocket",
                           f"127.0.0.1:{free_port()}", env=dict(self.env, HOTLINE_EVAL_SPOOL=str(spool)))
        self.servers.append((process, port))

    def start_rest(self, workers: int, ami: SimulatedAsterisk, sweep_seconds: float) -> None:
        for n in range(workers):
            self.others.append(self.cli(f"worker-{n}", "worker", "--queue", "callbacks"))
        self.dialer = self.cli("dialer", "dialer", env=dict(
            self.env, AMI_HOST=ami.host, AMI_PORT=str(ami.port), AMI_USERNAME=ami.username, AMI_SECRET=ami.secret))
        self.others.append(self.dialer)
        self.others.append(self._start("sweep", [sys.executable, "-c", SWEEP, str(sweep_seconds)]))
        self.web_port = free_port()
        self.others.append(self.cli("web", "web", "--listen", f"127.0.0.1:{self.web_port}", "--threads", "4"))

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [process for process, _ in self.servers] + self.others

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                log = self.home / f"{self.names[process.pid]}.log"
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{log.stem} exited {process.returncode}:\n{tail}")

    def server_cpu(self) -> float:
        return sum(process_cpu(process.pid) for process, _ in self.servers)

    def node_cpu(self) -> float:
        return sum(process_cpu(process.pid) for process in self.processes)

    def stop(self, only: subprocess.Popen[bytes] | None = None) -> None:
        processes = [only] if only else self.processes
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


async def wait_for_port(port: int, node: Node, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node.check_alive()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s; see the logs in {node.home}")


async def wait_for_log(node: Node, name: str, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    log = node.home / f"{name}.log"
    while needle not in (log.read_text(errors="replace") if log.exists() else ""):
        node.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} never said {needle!r}; see {log}")
        await asyncio.sleep(0.1)


def simulated_ami(ivr_port: int) -> SimulatedAsterisk:
    """The demo's simulated Asterisk: citizens pick up (or not) by their number's last digit and key answers
    into ``callback-verify`` on the FastAGI server at ``ivr_port``."""
    def citizen(number: str) -> list[Reaction]:
        return [Press(key) for key in ANSWERS.get(number[-1:], SATISFIED)]

    return SimulatedAsterisk(behaviour=lambda number: PICK_UP.get(number[-1:], "answer"), ring_seconds=0.3,
                             talk_seconds=0.3, seed=1,
                             dialplan={"callback-verify": fastagi_context("127.0.0.1", ivr_port, citizen)})


# -- what is measured -----------------------------------------------------------------------------


class StoreWatch:
    """When each rating became visible in PostgreSQL, against its ``rated_at`` (when the server read the key)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lags: dict[int, float] = {}
        self.floor = 0

    def poll(self) -> None:
        # The poll's start bounds the commit from above: a row seen now was committed before this query began.
        looked = datetime.now(timezone.utc)
        with self.engine.connect() as db:
            rows = db.execute(select(Rating.id, Rating.rated_at).where(Rating.id > self.floor)).all()
        for rating_id, rated_at in rows:
            self.lags.setdefault(rating_id, (looked - rated_at).total_seconds())
        if rows:
            self.floor = max(self.floor, max(rating_id for rating_id, _ in rows) - POLL_OVERLAP)

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.to_thread(self.poll)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)

    async def settle(self, expected: int) -> None:
        """Poll on until ``expected`` ratings are seen, or ``SETTLE_SECONDS`` pass."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while len(self.lags) < expected and time.monotonic() < deadline:
            await asyncio.to_thread(self.poll)
            await asyncio.sleep(POLL_SECONDS)


def backlog(engine: Engine) -> tuple[int, int]:
    """Open 差评 tasks no call has been placed for yet, and all tasks."""
    placed = exists().where(CallbackAttempt.task_id == CallbackTask.id, CallbackAttempt.originated_at.is_not(None))
    with engine.connect() as db:
        waiting = db.scalar(select(func.count()).select_from(CallbackTask)
                            .where(CallbackTask.state.in_(OPEN_TASK_STATES), ~placed)) or 0
        tasks = db.scalar(select(func.count()).select_from(CallbackTask)) or 0
    return waiting, tasks


class PageReader(threading.Thread):
    """An agent and a supervisor reading the web tool's pages over HTTP, ``rate`` pages a second between them."""

    PAGES = (("agent", "/agent/"), ("boss", "/agent/?scope=all"), ("boss", "/agent/?q=138&scope=all"),
             ("boss", "/supervisor/figures"))

    def __init__(self, port: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.base, self.interval = f"http://127.0.0.1:{port}", 1 / rate if rate > 0 else 0.0
        self.stopped = threading.Event()
        self.seconds: list[float] = []
        self.failed: list[str] = []

    def signed_in(self, username: str) -> httpx.Client:
        client = httpx.Client(base_url=self.base, timeout=60)
        form = client.get("/login").text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
        answer = client.post("/login", data={"username": username, "password": PASSWORD,
                                             "csrf_token": token.group(1) if token else ""})
        if answer.status_code != 302:
            raise RuntimeError(f"signing in as {username} answered {answer.status_code}")
        return client

    def run(self) -> None:
        if not self.interval:
            return
        clients = {name: self.signed_in(name) for name in ("agent", "boss")}
        n = 0
        try:
            while not self.stopped.wait(self.interval):
                who, path = self.PAGES[n % len(self.PAGES)]
                n += 1
                started = time.perf_counter()
                try:
                    status = clients[who].get(path).status_code
                except httpx.HTTPError as exc:
                    self.failed.append(f"{path}: {exc}")
                    continue
                self.seconds.append(time.perf_counter() - started)
                if status != 200:
                    self.failed.append(f"{path}: {status}")
        finally:
            for client in clients.values():
                client.close()


def plan(rules: Rules, count: int, negative_share: float, seed: int) -> list[SimulatedCall]:
    """``count`` callers, ``negative_share`` of them giving a 差评 (with or without a reason, some hanging up after
    it), the others the simulator's mix of the rest (satisfied, silent, hanging up, keying wrong …)."""
    rng = random.Random(seed)
    negative = [(kind, weight) for kind, weight in CALLER_MIX if kind in NEGATIVE_KINDS]
    rest = [(kind, weight) for kind, weight in CALLER_MIX if kind not in NEGATIVE_KINDS]
    base = int(time.time())
    calls = []
    for n in range(count):
        mix = negative if rng.random() < negative_share else rest
        kind = rng.choices([k for k, _ in mix], [w for _, w in mix])[0]
        caller, expected = make_caller(kind, rules.hotline(rng.choice(HOTLINES)), rules, rng, n)
        calls.append(SimulatedCall(f"{base}.{n}", caller, expected))
    return calls


def arrivals(rate: float, seconds: float, seed: int) -> list[float]:
    """Poisson arrival times (seconds from the start) of callers at ``rate`` a second, for ``seconds``."""
    rng = random.Random(seed)
    times = [rng.expovariate(rate)]
    while times[-1] < seconds:
        times.append(times[-1] + rng.expovariate(rate))
    return times[:-1]


# -- one run --------------------------------------------------------------------------------------


@dataclass
class Figures:
    offered: float
    calls_per_s: float
    p99_turn_ms: float
    p99_lag_ms: float
    backlog: int
    tasks: int
    server_cpu: float
    node_cpu: float
    page_p95_ms: float
    calls: int
    failed: int
    stored: str
    errors: list[str]


async def run(args: argparse.Namespace, databases: Databases, redis_url: str, home: Path, servers: int,
              level: float) -> Figures:
    name = f"{servers}s_{str(level).replace('.', '_')}x"
    folder = home / name
    folder.mkdir()
    rules = parse_rules(keys_only_rules(folder))
    rules_file = folder / "demo-rules.yaml"
    Redis.from_url(redis_url).flushall()  # nothing left of the last run: its scheduled retries name its tasks
    database = databases.fresh(name)
    env = dict(os.environ, DATABASE_URL=database, REDIS_URL=redis_url, HOTLINE_EVAL_HOME=str(folder),
               HOTLINE_EVAL_RULES=str(rules_file), HOTLINE_EVAL_SECRET_KEY=secrets.token_urlsafe(32),
               HOTLINE_EVAL_INSECURE_COOKIES="1", PYTHONPATH=str(ROOT))
    # The same callers at the same moments on one server and on two; a higher level plays the same stream of
    # callers faster (level × the window, compressed into it), so levels differ by the rate, not by luck.
    window = args.minutes * 60
    when = [moment / level for moment in arrivals(args.peak / 60, window * level, SEED)]
    calls = plan(rules, len(when), args.negative_share, SEED)
    node = Node(folder, env)
    engine = make_engine(database)
    watch = StoreWatch(engine)
    sounds = sound_lengths()
    try:
        for n in range(servers):
            node.start_server(n)
        for _, port in node.servers:
            await wait_for_port(port, node)
        ami = simulated_ami(node.servers[0][1])
        await ami.start()
        try:
            node.start_rest(args.workers, ami, args.sweep_seconds)
            await wait_for_port(node.web_port, node)
            await wait_for_log(node, "worker-0", "Listening on")
            while not any(connection.logged_in for connection in ami._connections):  # the dialer is in
                node.check_alive()
                await asyncio.sleep(0.1)
            reader = PageReader(node.web_port, args.page_reads)
            reader.start()
            stop_watch = asyncio.Event()
            watching = asyncio.create_task(watch.watch(stop_watch))
            server_cpu, node_cpu = node.server_cpu(), node.node_cpu()
            loop = asyncio.get_running_loop()
            started = loop.time()
            ended: list[float] = []

            async def one(n: int, call: SimulatedCall) -> None:
                await asyncio.sleep(max(0.0, started + when[n] - loop.time()))
                call.result = await run_call("127.0.0.1", node.servers[n % servers][1], call.caller,
                                             uniqueid=call.uniqueid, script=f"postcall?hotline={call.expected.hotline}",
                                             time_scale=args.time_scale, sounds=sounds, timeout=600)
                ended.append(loop.time())

            await asyncio.gather(*(one(n, call) for n, call in enumerate(calls)))
            span = max(ended) - started if ended else 1.0
            waiting, tasks = await asyncio.to_thread(backlog, engine)
            server_cpu, node_cpu = node.server_cpu() - server_cpu, node.node_cpu() - node_cpu
            reader.stopped.set()
            rated = sum(1 for call in calls if call.expected.level and call.result and not call.result.error)
            await watch.settle(rated)
            stop_watch.set()
            await watching
            reader.join(timeout=60)
            node.check_alive()
        finally:
            # The dialer first, then the AMI (hanging up its callbacks), then the FastAGI servers they talk to.
            node.stop(node.dialer)
            await asyncio.sleep(0.2)  # the AMI reads the dialer's goodbye (the loop waited in stop())
            await ami.stop()
    finally:
        node.stop()
        engine.dispose()
    done = [call.result for call in calls if call.result and not call.result.error and call.result.closed_by_server]
    turns = [t for result in done for t in result.turn_seconds[1:]]  # [0] includes accept and the environment
    errors = [f"{call.uniqueid}: {call.result.error if call.result else 'not played'}" for call in calls
              if not call.result or call.result.error or not call.result.closed_by_server]
    errors += [f"page {failure}" for failure in reader.failed]
    return Figures(offered=len(calls) / window, calls_per_s=len(done) / span, p99_turn_ms=p99(turns) * 1000,
                   p99_lag_ms=p99(list(watch.lags.values())) * 1000, backlog=waiting, tasks=tasks,
                   server_cpu=server_cpu / max(len(done), 1), node_cpu=node_cpu / max(len(done), 1),
                   page_p95_ms=quantile(reader.seconds, 95, 100) * 1000, calls=len(calls),
                   failed=len(calls) - len(done), stored=f"{len(watch.lags)}/{rated}", errors=errors)


def quantile(values: list[float], k: int, n: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=n)[k - 1]


def p99(values: list[float]) -> float:
    return quantile(values, 99, 100)


def ratio(value: float, base: float) -> str:
    return f"×{value / base:.2f}" if base > 0 else ("×1.00" if value == 0 else "—")


def print_table(results: list[tuple[str, Figures]]) -> None:
    base = results[0][1]
    print(f"\n{'run':<16} {'offered':>7} {'calls/s':>14} {'p99 turn ms':>16} {'p99 store lag ms':>17} "
          f"{'backlog/tasks':>17} {'server CPU s/call':>18} {'node CPU s/call':>17} {'page p95 ms':>15} "
          f"{'failed':>6} {'stored':>9}")
    for name, f in results:
        print(f"{name:<16} {f.offered:7.2f} {f.calls_per_s:7.2f} {ratio(f.calls_per_s, base.calls_per_s):>6} "
              f"{f.p99_turn_ms:8.1f} {ratio(f.p99_turn_ms, base.p99_turn_ms):>7} "
              f"{f.p99_lag_ms:9.0f} {ratio(f.p99_lag_ms, base.p99_lag_ms):>7} "
              f"{f.backlog:4}/{f.tasks:<4} {ratio(f.backlog, base.backlog):>7} "
              f"{f.server_cpu:10.4f} {ratio(f.server_cpu, base.server_cpu):>7} "
              f"{f.node_cpu:9.4f} {ratio(f.node_cpu, base.node_cpu):>7} "
              f"{f.page_p95_ms:7.0f} {ratio(f.page_p95_ms, base.page_p95_ms):>7} "
              f"{f.failed:>6} {f.stored:>9}")
    print("ratios against the first row (one FastAGI server at 1×); offered (callers arriving in the window) and "
          "calls/s in calls a second; store lag "
          f"to within {POLL_SECONDS * 1000:.0f} ms; backlog: open 差评 tasks not yet dialled when the last call ended")
    for name, f in results:
        for error in f.errors[:3]:
            print(f"{name}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_DATABASE),
                        help="a PostgreSQL URL whose server the benchmark makes (and drops) its databases on "
                             "(default: $TEST_POSTGRES_URL)")
    parser.add_argument("--peak", type=float, default=200, help="calls a minute at 1×")
    parser.add_argument("--negative-share", type=float, default=0.2, help="share of callers giving a 差评")
    parser.add_argument("--minutes", type=float, default=2, help="how long callers arrive at each level")
    parser.add_argument("--levels", default="1,2,4", help="multiples of the peak")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="prompts play for this share of their real length")
    parser.add_argument("--workers", type=int, default=2, help="`hotline-eval worker` processes")
    parser.add_argument("--sweep-seconds", type=float, default=10,
                        help="how often the sweep runs (rq cron: 60; shorter, for runs of a few minutes)")
    parser.add_argument("--page-reads", type=float, default=2, help="web pages read a second (0: none)")
    args = parser.parse_args()
    if not args.database.startswith("postgresql"):
        sys.exit("this benchmark is for PostgreSQL")
    levels = [float(level) for level in args.levels.split(",")]
    print(f"peak {args.peak:g} calls/min, {args.negative_share:.0%} 差评, {args.minutes:g} min per run at "
          f"{', '.join(f'{level:g}×' for level in levels)}, prompts at ×{args.time_scale:g} of their length, "
          f"{args.workers} worker(s), sweep every {args.sweep_seconds:g} s, {args.page_reads:g} page(s)/s, "
          f"{os.cpu_count()} CPU(s)")
    results: list[tuple[str, Figures]] = []
    with tempfile.TemporaryDirectory() as folder, private_redis() as redis_url:
        databases = Databases(args.database, Path(folder) / "template")
        try:
                for level in levels:
                    for servers in (1, 2):
                        name = f"{servers} server{'s' if servers > 1 else ''} {level:g}×"
                        print(f"{name} …", flush=True)
                        figures = asyncio.run(run(args, databases, redis_url, Path(folder), servers, level))
                        results.append((name, figures))
                        print(f"  {figures.calls} calls, {figures.calls_per_s:.2f}/s completed, p99 turn "
                              f"{figures.p99_turn_ms:.1f} ms, {figures.failed} failed", flush=True)
        finally:
            databases.drop_all()
    print_table(results)


if __name__ == "__main__":
    main()
