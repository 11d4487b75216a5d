"""The demo's last step: the web tool on the demo's store, with sign-ins for each role.

Passwords are made fresh on every run and printed (the demo's store is a local
SQLite file); the server listens on 127.0.0.1 only, until Ctrl-C.

Behind it, on the main thread's event loop, what a deployment runs beside the
web tool: the dialer on a simulated Asterisk AMI (the citizens of the callback
step, verified over the FastAGI server's ``callback-verify``), so that a
click-to-call (呼叫市民) is dialled and ends; the sweep once a minute, with the
RQ job's work done in-process (no Redis in this phase), so retries come round;
and the stand-in recordings of what it dialled, so the players play.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from ipaddress import ip_network
from pathlib import Path

import click
import waitress
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from callback.dialer import AmiSettings, Dialer
from callback.jobs import SWEEP_INTERVAL_SECONDS
from hotline_eval.demo_audio import write_missing_audio
from hotline_eval.demo_callbacks import STATE_NAMES, demo_asterisk
from ivr.service import running_ivr
from rating_core.complaints.callback_tasks import request_attempt, sweep
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.rules.settings import Settings
from rating_core.store.models import CallbackAttempt, WebUser
from web import create_app
from web.accounts import create_user

log = logging.getLogger(__name__)

# username: (role, name, 工号 or unit); 工号 2001 is not among the simulated callers' agents (1000–1039).
DEMO_USERS = {
    "demo-agent": ("agent", "回访坐席（演示）", "2001"),
    "demo-boss": ("supervisor", "质检主管（演示）", None),
    "demo-admin": ("admin", "管理员（演示）", None),
    "demo-unit": ("unit", "市人社局（演示）", "市人社局"),
}


def demo_logins(store: RatingStore) -> dict[str, str]:
    """Create or reset the demo users; their new passwords by username."""
    passwords = {}
    with store.sessions.begin() as session:
        for username, (role, name, extra) in DEMO_USERS.items():
            password = secrets.token_urlsafe(9)
            user = session.scalars(select(WebUser).where(WebUser.username == username)).one_or_none()
            if user is None:
                create_user(session, username, password, role, name,
                            agent_id=extra if role == "agent" else None, unit=extra if role == "unit" else None)
            else:
                user.password_hash = generate_password_hash(password)
            passwords[username] = password
    return passwords


def recording_roots(rules: Rules) -> list[str]:
    """The folders the web tool serves recordings from: the rules' voice-message folders and the callbacks'."""
    roots = {profile.voice_message.directory for profile in rules.hotlines.values()}
    template = rules.callback.dialer.recording_file
    if template:
        roots.add(str(Path(template).parent))
    return sorted(roots | {"/var/spool/asterisk/monitor"})


def serve_web(store: RatingStore, journal: Journal, listener: socket.socket, settings: Settings,
              recordings: Path) -> None:
    """Serve on ``listener`` (bound when the demo started, so the port was never free for another) until Ctrl-C,
    with the dialer and the sweep behind it.

    The backstage's event loop owns the main thread and the web server runs in a daemon thread, not the other
    way round: Ctrl-C then cancels the backstage through :func:`asyncio.run`, which stops the dialer, the
    simulated AMI and the FastAGI server in order and waits for its worker threads, and the web server's
    threads end with the process. (Run in a thread of its own, the backstage could be left running by a Ctrl-C
    that came while it started, and the process then waited for it at exit.)"""
    port = listener.getsockname()[1]
    listener.listen(64)  # from here a browser waits for the server instead of being refused
    passwords = demo_logins(store)
    # Prometheus may read /metrics from this host: the demo's FastAGI server and dialer run in this process, so
    # their counts are there beside the store's.
    app = create_app(store, {"DEMO": True, "SESSION_COOKIE_SECURE": False,
                             "RECORDING_ROOTS": recording_roots(store.rules),
                             "METRICS_FROM": (ip_network("127.0.0.1/32"), ip_network("::1/128"))}, settings)
    click.echo(f"\n9. the web tool: http://127.0.0.1:{port}/  (Ctrl-C stops the demo; the SMS links above open here)")
    click.echo(f"   metrics (Prometheus, from this host only): http://127.0.0.1:{port}/metrics")
    for username, (role, name, _extra) in DEMO_USERS.items():
        click.echo(f"   {name:<12} {username:<11} 密码 {passwords[username]}")
    web = threading.Thread(target=waitress.create_server(app, sockets=[listener], threads=4).run,
                           name="demo-web", daemon=True)
    web.start()
    click.echo("   behind it: the dialer on the simulated Asterisk AMI (坐席点「呼叫市民」即拨出，"
               "市民按演示规则接听、按键核实), the sweep every minute; each call that ends is listed here")
    click.echo("   演示市民：号码尾数 6 占线、7 无人接听、8 拒接、9 线路拥塞，其余接听")
    try:
        asyncio.run(run_backstage(store, journal, asyncio.Event(), recordings=recordings))
    except KeyboardInterrupt:
        return
    except Exception as exc:  # the web tool goes on without it; say why once
        log.exception("demo: the dialer behind the web tool stopped")
        click.echo(f"   后台拨号器已停止：{exc}（网页仍可使用，但「呼叫市民」不会拨出）", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        while web.is_alive():
            web.join(timeout=1)


async def run_backstage(store: RatingStore, journal: Journal, stop: asyncio.Event, *, recordings: Path,
                        sweep_every: float = SWEEP_INTERVAL_SECONDS, poll: float = 0.2,
                        report: Callable[[str], None] = click.echo) -> None:
    """The dialer (on the demo's simulated AMI and FastAGI server), the sweep every ``sweep_every`` seconds, the
    stand-in recordings, and a line to ``report`` for each attempt that ends, until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
        ami = demo_asterisk(ivr.server.port)
        await ami.start()
        dialer = Dialer(store.sessions, store.rules.callback, AmiSettings(ami.host, ami.port, ami.username, ami.secret),
                        poll_interval=poll)
        running = asyncio.create_task(dialer.run())
        try:
            seen: set[int] = set()
            await asyncio.to_thread(_ended_attempts, store, seen)  # what ended before: not news
            next_sweep = loop.time() + sweep_every
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll)
                try:
                    if loop.time() >= next_sweep:
                        next_sweep = loop.time() + sweep_every
                        await asyncio.to_thread(sweep_and_request, store)
                    for line in await asyncio.to_thread(_ended_attempts, store, seen):
                        report(line)
                    await asyncio.to_thread(write_missing_audio, store, recordings)
                except Exception:  # a busy SQLite file, say: the next round tries again
                    log.exception("demo: the round behind the web tool failed")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await ami.stop()


def sweep_and_request(store: RatingStore) -> int:
    """What ``rq cron``'s sweep and the RQ jobs it enqueues do, in-process: attempts queued for due tasks."""
    now = datetime.now(timezone.utc)
    with store.sessions.begin() as session:
        result = sweep(session, store.rules.callback, now)
    queued = 0
    for task_id, _seq in result.due:
        with store.sessions.begin() as session:
            queued += request_attempt(session, store.rules.callback, task_id, now, "system:demo").attempt_id is not None
    return queued


def _ended_attempts(store: RatingStore, seen: set[int]) -> list[str]:
    """A line for each attempt that ended and is not in ``seen`` (which takes it in)."""
    lines = []
    with store.sessions() as session:
        ended = session.scalars(select(CallbackAttempt).where(CallbackAttempt.status == "ended")
                                .where(CallbackAttempt.id.not_in(seen) if seen else CallbackAttempt.id.is_not(None))
                                .order_by(CallbackAttempt.id)).all()
        for attempt in ended:
            seen.add(attempt.id)
            task = attempt.task
            lines.append(f"   回访任务 #{task.id} 第{attempt.seq}次呼叫：{attempt.outcome} → "
                         f"{STATE_NAMES.get(task.state, task.state)}")
    return lines
