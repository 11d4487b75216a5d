"""The one-command demo: everything a newcomer needs to see the loop work, on SQLite, no PBX."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from hotline_eval.demo_audio import recordings_root, write_missing_audio
from hotline_eval.demo_callbacks import run_callbacks
from hotline_eval.demo_sms import run_sms
from hotline_eval.demo_speech import run_speech
from ivr.service import running_ivr
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.reports.export import export_rows
from rating_core.rules.privacy import mask_phone
from rating_core.rules.settings import Settings
from rating_core.store.migrate import upgrade
from simulators.callers import Summary, check_store, plan_calls, simulate


def run_demo(store: RatingStore, journal: Journal, settings: Settings, *, calls: int, concurrency: int, port: int,
             public_url: str) -> int:
    """Return the process exit code: 0 when every simulated call landed as its caller gave it."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    click.echo(f"1. migrating the rating store ({store.engine.url.render_as_string(hide_password=True)})")
    upgrade(store.engine)
    summary = asyncio.run(_serve_and_simulate(store, journal, calls, concurrency, port))
    click.echo("\n3. what the simulated callers gave, checked against the store:")
    for line in summary.lines(store.rules):
        click.echo(f"   {line}")
    click.echo("\n4. the latest calls in the store (hotline-eval ratings export shows them all):")
    with store.sessions() as session:
        rows = list(export_rows(session, store.rules))[-12:]
    for row in rows:
        tags = "、".join(row["reason_tag_names"] or [])
        voice = " +留言" if row["voice_message_file"] else ""
        click.echo(
            f"   {row['uniqueid']:<18} {row['hotline']:<6} {mask_phone(row['caller_number']):<12} "
            f"工号{row['agent_id'] or '-':<5} {row['level_name']:<6} {tags}{voice}  ({row['end_reason']})"
        )
    misheard = run_speech(store, journal, settings.models_dir)
    write_missing_audio(store, recordings_root(settings.home))  # the voice messages, where Asterisk would have
    run_callbacks(store, journal, settings.home)
    run_sms(store, public_url, settings)
    return 0 if not summary.errors and not summary.mismatches and not misheard else 1


async def _serve_and_simulate(store: RatingStore, journal: Journal, calls: int, concurrency: int, port: int) -> Summary:
    async with running_ivr(store, journal, "127.0.0.1", port) as ivr:
        click.echo(f"2. FastAGI server on 127.0.0.1:{ivr.server.port}; "
                   f"{calls} simulated callers, {concurrency} at a time")
        planned = plan_calls(store.rules, calls, seed=2026)
        summary = await simulate("127.0.0.1", ivr.server.port, planned, concurrency=concurrency)
    with store.sessions() as session:
        check_store(session, planned, summary)
    return summary


# What a run of the demo leaves in its home, moved aside by the next run unless it is given --keep. Never the
# models (downloaded once), nor anything else a user keeps there.
SQLITE_FILES = ("hotline-eval.db", "hotline-eval.db-wal", "hotline-eval.db-shm", "hotline-eval.db-journal")
RUN_FOLDERS = ("recordings", "transcoded")
PREVIOUS = "previous-run"


def claim_port(port: int, *, what: str, option: str, given: bool) -> socket.socket | None:
    """A socket bound to 127.0.0.1:``port`` (held until the server takes it over), before any work is done.

    Taken, a port the user gave stops the demo with one line; the default one gives way to a free port,
    and the demo says which. ``port`` 0 binds any free port.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: a TIME_WAIT is no owner
    try:
        listener.bind(("127.0.0.1", port))
        return listener
    except OSError as exc:
        if given or exc.errno != errno.EADDRINUSE:
            listener.close()
            raise click.ClickException(f"端口 {port} 已被占用（{what}）：请用 {option} 换一个端口（0 = 任一空闲端口），"
                                       f"或先停掉占用它的程序 ({exc.strerror})") from None
        listener.bind(("127.0.0.1", 0))
        click.echo(f"0. 端口 {port} 已被占用：{what}改用空闲端口 {listener.getsockname()[1]}（{option} 可指定）")
        return listener


def own_database(database_url: str, home: Path) -> bool:
    """Whether ``database_url`` is the demo's own SQLite file under ``home``."""
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        return False
    return Path(url.database).resolve() == (home / SQLITE_FILES[0]).resolve()


def start_afresh(settings: Settings, *, keep: bool) -> None:
    """Move what the last run left in the demo's home to ``previous-run/`` (replacing the one before), so that
    this run starts from an empty store; with ``keep``, go on with it.

    A ``DATABASE_URL`` naming another database is never touched: the demo refuses to write its simulated calls
    into it unless given ``--keep``, which says the user means it.
    """
    home = settings.home
    if not own_database(settings.database_url, home):
        shown = make_url(settings.database_url).render_as_string(hide_password=True)
        if not keep:
            raise click.ClickException(
                f"DATABASE_URL 指向另一个数据库（{shown}）：演示会往其中写入模拟来电和演示账号。"
                "请取消 DATABASE_URL 再运行（演示用自己的 SQLite 文件），或加 --keep 表示确要写入它"
            )
        click.echo(f"0. --keep: the demo writes into DATABASE_URL ({shown}) as it is")
        return
    if keep:
        if (home / SQLITE_FILES[0]).exists():
            click.echo(f"0. --keep: going on with the last run's store in {home}")
        return
    spool = settings.spool_dir.resolve()
    folders = [*RUN_FOLDERS, *(["spool"] if spool == (home / "spool").resolve() else [])]
    found = [home / name for name in (*SQLITE_FILES, *folders) if (home / name).exists()]
    if not found:
        return
    previous = home / PREVIOUS
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir(parents=True)
    for path in found:
        os.replace(path, previous / path.name)
    click.echo(f"0. a fresh store: the last run's is in {previous} now (--keep goes on with it instead)")
