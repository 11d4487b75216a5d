"""``hotline-eval``: one command, a subcommand per process or task.

Configuration comes from the environment only, read once when the command starts
(:class:`rating_core.rules.settings.Settings` names every variable): ``DATABASE_URL``
(default: a SQLite file under ``$HOTLINE_EVAL_HOME``, ``./var``), ``HOTLINE_EVAL_RULES``,
``HOTLINE_EVAL_SPOOL`` (default ``$HOTLINE_EVAL_HOME/spool``), ``REDIS_URL``,
and for the dialer ``AMI_HOST``, ``AMI_PORT``, ``AMI_USERNAME``, ``AMI_SECRET``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import click
import uvloop
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from hotline_eval.logging_setup import LogFormat, setup_logging
from rating_core.events.journal import Journal, JournalFull
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import HotlineProfile, Rules, RulesError, load_rules
from rating_core.rules.settings import Settings
from rating_core.store.database import make_engine

log = logging.getLogger("hotline_eval")


def read_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc


def settings() -> Settings:
    """This run's settings, read from the environment once by :func:`main`."""
    given = click.get_current_context().find_root().obj
    assert isinstance(given, Settings)
    return given


def open_store(given: Settings) -> RatingStore:
    try:
        rules = load_rules(given.rules_file)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from exc
    return RatingStore(make_engine(given.database_url), rules, region_code=given.region_code,
                       number_key=given.number_key)


def require_number_key(store: RatingStore) -> None:
    """Refuse to start a process that compares callers' numbers with the malicious-rater list when the list
    holds hashed numbers and this process has no key to hash with: it would let those numbers through."""
    from sqlalchemy.exc import SQLAlchemyError

    from rating_core.ratings.retention_numbers import listed_hashes_present

    if store.number_key:
        return
    try:
        with store.sessions() as session:
            hashed = listed_hashes_present(session)
    except SQLAlchemyError:  # not migrated yet: nothing hashed, and `db upgrade` is what it needs
        return
    if hashed:
        raise click.ClickException(
            "configuration: HOTLINE_EVAL_NUMBER_KEY is not set, but the malicious-rater list holds numbers the "
            "retention pass hashed with it; without the key they would no longer be recognised. Set the key the "
            "retention pass used (the same in every process)")


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    try:
        return host.strip("[]") or "0.0.0.0", int(port)
    except ValueError:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}") from None


# Prometheus' registered default for a Python client's exporter; the units give each process its own port.
METRICS_PORT = 9464
METRICS_HELP = ("Serve Prometheus metrics at http://HOST:PORT/metrics (default: none; give each process on a host "
                "its own port).")


def _serve_metrics(value: str | None) -> None:
    """Start the metrics endpoint (a thread) when asked to; a port in use is one line, not a traceback."""
    if not value:
        return
    from prometheus_client import start_http_server

    host, port = _host_port(value, METRICS_PORT)
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; choose another "
                                   f"port with --metrics HOST:PORT") from exc
    log.info("metrics on http://%s:%d/metrics", host, port)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="Log lines as text or one JSON object each (default: $HOTLINE_EVAL_LOG_FORMAT, else text).")
@click.pass_context
def main(ctx: click.Context, verbose: bool, log_format: LogFormat | None) -> None:
    """Post-call evaluation (好差评) for 12345 / 12333 hotlines."""
    if ctx.invoked_subcommand == "doctor":  # a malformed setting is among what it reports, not a stop before it
        from hotline_eval.doctor import read_settings_leniently

        ctx.obj = read_settings_leniently()[0]
    else:
        ctx.obj = read_settings()
    setup_logging(verbose, log_format or ctx.obj.log_format, ctx.obj.log_zone)


@main.command()
@click.option("--skip", "skipped", multiple=True, metavar="CHECK",
              help="Leave out this check (repeatable): settings, rules, database, redis, ami, ports, prompts, "
                   "folders, speech, calendar, webhooks.")
@click.option("--listen", default="127.0.0.1:4573", show_default=True, help="Where `agi` will listen (FastAGI).")
@click.option("--audiosocket", default="127.0.0.1:9092", show_default=True,
              help="Where `agi` will listen for AudioSocket.")
@click.option("--running", is_flag=True, help="The FastAGI server is up: its ports must answer, not be free.")
@click.option("--sounds", type=click.Path(path_type=Path), default=None,
              help="Asterisk's hotline-eval sound folder as this host sees it "
                   "(default /var/lib/asterisk/sounds/hotline-eval).")
@click.option("--now", "now_iso", help="ISO time to check as (the calendar's years; default: now).")
def doctor(skipped: tuple[str, ...], listen: str, audiosocket: str, running: bool, sounds: Path | None,
           now_iso: str | None) -> None:
    """Check this deployment before its first call: a line per finding (ok, warn, FAIL); exit 1 on a FAIL."""
    from hotline_eval.doctor import (
        ASTERISK_SOUNDS,
        CHECKS,
        Deployment,
        any_failed,
        read_settings_leniently,
        report_lines,
        run_checks,
    )

    unknown = sorted(set(skipped) - set(CHECKS))
    if unknown:
        raise click.BadParameter(f"no check {', '.join(unknown)} (known: {', '.join(CHECKS)})", param_hint="--skip")
    given, problems = read_settings_leniently()
    deployment = Deployment(given, _iso_time(now_iso, "--now"), problems, agi_listen=_host_port(listen, 4573),
                            audiosocket=_host_port(audiosocket, 9092), running=running,
                            sounds=sounds or ASTERISK_SOUNDS, sounds_given=sounds is not None)
    results = run_checks(deployment, skipped)
    for line in report_lines(results):
        click.echo(line)
    if any_failed(results):
        sys.exit(1)


# -- database -------------------------------------------------------------------


@main.group()
def db() -> None:
    """The rating store's schema and spool."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.option("--wait", "wait_seconds", type=click.IntRange(min=0), default=0, show_default=True, metavar="SECONDS",
              help="Wait up to SECONDS for the database to accept connections (a boot where it starts later).")
def db_upgrade(revision: str, wait_seconds: int) -> None:
    """Apply the schema migrations."""
    from sqlalchemy.exc import OperationalError

    from hotline_eval.doctor import first_line
    from rating_core.store.migrate import upgrade

    engine = make_engine(settings().database_url)
    _wait_for_database(engine, wait_seconds)
    try:
        upgrade(engine, revision)
    except OperationalError as exc:  # one line, logged (an error in the journal), not a traceback
        log.error("database at %s: %s%s", engine.url.render_as_string(hide_password=True), first_line(exc),
                  f" (waited {wait_seconds} s)" if wait_seconds else "")
        sys.exit(1)
    click.echo(f"database at {engine.url.render_as_string(hide_password=True)} is at {revision}")


def _wait_for_database(engine: Engine, seconds: int) -> None:
    """Until the database accepts a connection, for at most ``seconds``; then the migration goes on and, if it
    still cannot connect, says why as it always has.

    The migration unit runs at boot, perhaps before PostgreSQL (on this host or another) accepts connections.
    Failing then would leave every unit that requires it stopped: systemd does not start them again when a
    restarted oneshot finally succeeds. Every refusal is logged (a wrong password is waited out too, and
    says so each time).
    """
    import time

    from sqlalchemy.exc import OperationalError

    from hotline_eval.doctor import first_line

    deadline = time.monotonic() + seconds
    pause = 1.0
    while time.monotonic() + pause <= deadline:
        try:
            with engine.connect():
                return
        except OperationalError as exc:
            log.warning("database at %s: %s; trying again in %.0f s",
                        engine.url.render_as_string(hide_password=True), first_line(exc), pause)
        time.sleep(pause)
        pause = min(pause * 2, 10.0)


@db.command("replay-spool")
def db_replay_spool() -> None:
    """Apply the journals of FastAGI servers that are gone (a running server's is left to it)."""
    from rating_core.ratings.journal_replay import replay_dead_journals

    read = replay_dead_journals(open_store(settings()), settings().spool_dir)
    click.echo(f"replayed {read} journal line(s) from {settings().spool_dir}")


@db.command("dead-letters")
def db_dead_letters() -> None:
    """List the events the store refused, with why (kept in the journal folder's dead-letters.jsonl)."""
    from rating_core.events.dead_letters import DeadLetters

    letters = DeadLetters(settings().spool_dir).all()
    for letter in letters:
        record = letter.record or {}
        click.echo(f"{letter.at.isoformat(timespec='seconds')}  {letter.stream} {letter.segment}:{letter.line}  "
                   f"{record.get('kind', '?')} call {record.get('uniqueid', '?')}  {letter.reason}")
    click.echo(f"{len(letters)} dead letter(s) in {DeadLetters(settings().spool_dir).path}")


# -- IVR ----------------------------------------------------------------------------


@main.command()
@click.option("--listen", default="127.0.0.1:4573", show_default=True, help="HOST:PORT to listen on.")
@click.option("--audiosocket", default="127.0.0.1:9092", show_default=True,
              help="HOST:PORT of the AudioSocket server that receives callers' speech.")
@click.option("--audiosocket-advertise", default=None, metavar="HOST:PORT",
              help="Where Asterisk reaches the AudioSocket server, if not --audiosocket itself.")
@click.option("--speech-workers", default=2, show_default=True, help="Speech recognition processes.")
@click.option("--speech-recordings", default=None, metavar="ASTERISK_DIR[=LOCAL_DIR]", callback=lambda _c, _p, value:
              _shared_folder(value),
              help="Hear spoken ratings from RECORD FILE into ASTERISK_DIR, a folder this host also sees "
                   "(at LOCAL_DIR if mounted elsewhere), instead of over AudioSocket.")
@click.option("--metrics", "metrics_at", default=None, metavar="HOST:PORT", help=METRICS_HELP)
def agi(listen: str, audiosocket: str, audiosocket_advertise: str | None, speech_workers: int,
        speech_recordings: tuple[str, Path] | None, metrics_at: str | None) -> None:
    """Run the FastAGI server (Asterisk: AGI(agi://host:4573/postcall?hotline=12345))."""
    from ivr.agi_server import DEFAULT_PORT
    from ivr.service import PortTaken, serve_until_signalled

    host, port = _host_port(listen, DEFAULT_PORT)
    store = open_store(settings())
    require_number_key(store)
    _warn_of_stale_sounds(store.rules)
    _serve_metrics(metrics_at)
    # uvloop (libuv) instead of the stock event loop: with thousands of calls in progress, the loop's own
    # work on each socket event is what a caller waits for between prompts (benchmarks/agi_concurrency.py).
    try:
        uvloop.run(serve_until_signalled(store, Journal(settings().spool_dir), host, port,
                                         audiosocket=_host_port(audiosocket, 9092),
                                         audiosocket_advertise=audiosocket_advertise, speech_workers=speech_workers,
                                         speech_recordings=speech_recordings, models_dir=settings().models_dir,
                                         notify_socket=os.environ.get("NOTIFY_SOCKET")))
    except JournalFull as exc:
        raise click.ClickException(f"{exc}: not starting, since no rating could be kept") from exc
    except PortTaken as exc:
        # One line, not a traceback: which port, and the option that moves it (another server on this host
        # holds it, most likely).
        option = "--listen" if exc.listener == "fastagi" else "--audiosocket"
        what = "FastAGI" if exc.listener == "fastagi" else "AudioSocket"
        raise click.ClickException(f"the {what} port {exc.host}:{exc.port} is already in use; "
                                   f"choose another with {option} HOST:PORT") from exc


def _warn_of_stale_sounds(rules: Rules) -> None:
    """Say at start-up which built prompts no longer say what the rules say (a promise changed with the
    policy, say), so the centre runs `prompts build` before a caller hears the old words. Calls still run."""
    from ivr.prompts import PromptBuildError, stale_sounds

    try:
        stale = stale_sounds(rules.hotlines.values())
    except PromptBuildError as exc:
        logging.getLogger("hotline_eval").warning("cannot check the prompt sounds: %s", exc)
        return
    for problem in stale:
        logging.getLogger("hotline_eval").warning("prompt sound out of date (run `hotline-eval prompts build`): %s",
                                                  problem)


def _shared_folder(option: str | None) -> tuple[str, Path] | None:
    """ASTERISK_DIR[=LOCAL_DIR]: the folder as Asterisk names it, and where this host reads it."""
    if option is None:
        return None
    asterisk_dir, _, local_dir = option.partition("=")
    if not asterisk_dir.startswith("/"):
        raise click.BadParameter(f"{asterisk_dir!r} is not an absolute path on the Asterisk host",
                                 param_hint="--speech-recordings")
    return asterisk_dir, Path(local_dir or asterisk_dir)


# -- speech models ----------------------------------------------------------------------


@main.group()
def models() -> None:
    """The Vosk speech models (installed under $HOTLINE_EVAL_MODELS, default $HOTLINE_EVAL_HOME/models)."""


@models.command("fetch")
@click.argument("name")
@click.option("--from", "source", default=None, metavar="URL_OR_ZIP",
              help="A URL, a zip file or an unpacked folder (default: the model's published URL).")
def models_fetch(name: str, source: str | None) -> None:
    """Install model NAME, verifying every file against its manifest."""
    from speech_models.fetch import FetchError, fetch

    try:
        folder = fetch(name, settings().models_dir, source)
    except (FetchError, KeyError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from exc
    click.echo(f"{name}: installed and verified in {folder}")


@models.command("check")
def models_check() -> None:
    """Which models are installed and verified, which hotlines hear speech and have their voice messages
    transcribed; exit 1 when one cannot."""
    from speech_models.manifests import catalog, locate

    rules = open_store(settings()).rules
    statuses = {name: locate(name, settings().models_dir, full=True) for name in catalog()}
    for name, status in statuses.items():
        where = f"ok, {status.directory}" if status.usable else "; ".join(status.problems[:3])
        click.echo(f"model {name} ({status.manifest.language}): {where}")
    installed = {name for name, status in statuses.items() if status.usable}
    missing = 0
    for hotline in rules.hotlines.values():
        language = hotline.speech.language
        if language is None:
            click.echo(f"hotline {hotline.code}: keys only (no speech configured)")
            continue
        model = rules.speech_languages[language].model
        if model in installed:
            click.echo(f"hotline {hotline.code}: speech ({language}, {model})")
        else:
            missing += 1
            click.echo(f"hotline {hotline.code}: KEYS ONLY: speech model {model} is not installed")
    for hotline in rules.hotlines.values():
        transcript_model = hotline.voice_message.transcript_model
        if transcript_model is None:
            continue
        if transcript_model in installed:
            click.echo(f"hotline {hotline.code}: voice messages transcribed ({transcript_model})")
        else:
            missing += 1
            click.echo(f"hotline {hotline.code}: voice messages WAIT for transcript model {transcript_model}, "
                       f"not installed")
    if missing:
        sys.exit(1)


def agi_script() -> None:
    """Console script ``hotline-eval-agi``: plain AGI over stdin/stdout, one call per process.

    The evaluation by default; ``script=callback-verify`` (with ``task=`` and
    ``attempt=``) runs the automated callback instead.
    """
    from ivr.agi_stdio import open_stdio_session
    from ivr.rating_writer import RatingWriter
    from ivr.service import make_scripts
    from rating_core.ratings.journal_replay import apply_own_journal
    from rating_core.rules.log_context import call_uniqueid

    given = read_settings()  # its own edge: Asterisk starts it, not `hotline-eval`
    setup_logging(False, given.log_format, given.log_zone)
    store = open_store(given)

    async def run() -> None:
        journal = Journal(given.spool_dir)
        journal.open()
        writer = RatingWriter(journal)
        scripts = make_scripts(store, writer)
        session = await open_stdio_session()
        call_uniqueid.set(session.env.uniqueid)  # one call per process: every line after this is about it
        try:
            name = session.env.query.get("script", "postcall")
            script = scripts.get(name)
            if script is None:
                logging.getLogger("hotline_eval").error("no AGI script %r (known: %s)", name, ", ".join(scripts))
            else:
                await script(session)
        finally:
            await session.close()
            await writer.stop()
            # The call's events are on disk; into the store now if it can take them, else the journal
            # stays for the FastAGI server or `db replay-spool` to apply.
            applied = await asyncio.to_thread(apply_own_journal, store, journal)
            journal.close(applied=applied)
            if applied:
                await asyncio.to_thread(store.forget_stream, journal.stream)

    asyncio.run(run())


@main.command()
@click.option("--calls", default=100, show_default=True, help="Number of calls.")
@click.option("--concurrency", default=20, show_default=True, help="Calls at once.")
@click.option("--target", default="127.0.0.1:4573", show_default=True, help="FastAGI server HOST:PORT.")
@click.option("--seed", default=12345, show_default=True, help="Seed of the caller mix.")
@click.option("--time-scale", default=0.0, show_default=True, help="1.0 plays prompts in real time; 0 skips waits.")
@click.option("--check/--no-check", default=True, show_default=True, help="Compare the store with what callers gave.")
def simulate(calls: int, concurrency: int, target: str, seed: int, time_scale: float, check: bool) -> None:
    """Play Asterisk's part: N callers over real FastAGI TCP, then a summary."""
    from simulators.callers import check_store, plan_calls
    from simulators.callers import simulate as run_simulation

    store = open_store(settings())
    host, port = _host_port(target, 4573)
    planned = plan_calls(store.rules, calls, seed)
    summary = asyncio.run(run_simulation(host, port, planned, concurrency=concurrency, time_scale=time_scale))
    if check:
        with store.sessions() as session:
            check_store(session, planned, summary)
    for line in summary.lines(store.rules):
        click.echo(line)
    if summary.errors or summary.mismatches:
        sys.exit(1)


@main.command()
@click.option("--calls", default=60, show_default=True)
@click.option("--concurrency", default=12, show_default=True)
@click.option("--port", default=4573, show_default=True, help="Port of the demo's FastAGI server (0 = any free).")
@click.option("--web-port", default=8000, show_default=True, help="Port of the web tool; 0 = do not serve it.")
@click.option("--keep", is_flag=True, help="Go on with the last run's store (default: a fresh one; the last run's "
                                           "is moved to previous-run/ in the demo's home).")
@click.pass_context
def demo(ctx: click.Context, calls: int, concurrency: int, port: int, web_port: int, keep: bool) -> None:
    """The whole loop on one machine: FastAGI, simulated callers, callbacks through RQ and a simulated AMI,
    then the web tool on what they left, with the dialer behind it."""
    from click.core import ParameterSource

    from hotline_eval.demo import claim_port, run_demo, start_afresh
    from hotline_eval.demo_audio import recordings_root
    from hotline_eval.demo_callbacks import write_demo_rules

    # The ports first, before minutes of work: one the user gave that is taken stops here with one line.
    def user_gave(name: str) -> bool:
        return ctx.get_parameter_source(name) is not ParameterSource.DEFAULT

    web = claim_port(web_port, what="网页工具", option="--web-port", given=user_gave("web_port")) if web_port else None
    if port:
        fastagi = claim_port(port, what="FastAGI 服务", option="--port", given=user_gave("port"))
        assert fastagi is not None
        port = fastagi.getsockname()[1]
        fastagi.close()  # bound again by the server in a moment
    start_afresh(settings(), keep=keep)
    # Set in the environment, not only in the settings: the demo's RQ jobs read it as a worker's would.
    if settings().rules_file is None:
        os.environ["HOTLINE_EVAL_RULES"] = str(write_demo_rules(settings().home))
    # The SMS links and the web tool that opens them must share one secret; a fresh one per run.
    os.environ.setdefault("HOTLINE_EVAL_SECRET_KEY", secrets.token_hex(32))
    given = read_settings()
    store = open_store(given)
    journal = Journal(given.spool_dir)
    web_port = web.getsockname()[1] if web is not None else 0
    try:
        code = run_demo(store, journal, given, calls=calls, concurrency=concurrency, port=port,
                        public_url=f"http://127.0.0.1:{web_port or 8000}")
        if code == 0 and web is not None:
            from hotline_eval.demo_web import serve_web

            try:
                serve_web(store, journal, web, given, recordings_root(given.home))
            except KeyboardInterrupt:
                pass
    finally:
        if web is not None:
            web.close()
    sys.exit(code)


def _iso_time(value: str | None, hint: str) -> datetime:
    if not value:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO time: {value!r}", param_hint=hint) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# -- ratings ------------------------------------------------------------------------


@main.group()
def ratings() -> None:
    """Read the ratings."""


@ratings.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--since", help="Only calls started at or after this ISO time (UTC unless it says otherwise).")
@click.option("--full-numbers", is_flag=True,
              help="Callers' numbers unmasked; recorded in the audit log (export_numbers) under cli:<your user>.")
def ratings_export(fmt: str, since: str | None, full_numbers: bool) -> None:
    """Calls with their rating (or 未评价), tags, channel variables and times; callers' numbers masked."""
    from rating_core.reports.export import export_rows, write_csv, write_jsonl

    since_at = _iso_time(since, "--since") if since else None
    store = open_store(settings())
    if full_numbers:
        from rating_core.reports.export import export_count

        _audit_full_numbers(store, lambda session: export_count(session, since_at), command="ratings export",
                            since=since_at.isoformat() if since_at else None, format=fmt)
    with store.sessions() as session:
        rows = export_rows(session, store.rules, since_at, full_numbers=full_numbers)
        count = (write_csv if fmt == "csv" else write_jsonl)(rows, sys.stdout)
    log.info("exported %d call(s)%s", count, " with full numbers" if full_numbers else "")


def _audit_full_numbers(store: RatingStore, count: Callable[[Session], int], **detail: str | None) -> None:
    """The audit entry of an export with full numbers, committed before the first number is written: an
    export cut short is still on record, and no number leaves without one."""
    from rating_core.store.audit_log import add_entry, command_line_user

    with store.sessions.begin() as session:
        add_entry(session, "export_numbers", username=command_line_user(),
                  detail={"count": count(session), **detail})


# -- callbacks ----------------------------------------------------------------------


@main.group()
def callbacks() -> None:
    """The 差评 callback tasks."""


@callbacks.command("list")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--full-numbers", is_flag=True,
              help="Citizens' numbers unmasked; recorded in the audit log (export_numbers) under cli:<your user>.")
def callbacks_list(fmt: str, full_numbers: bool) -> None:
    """Tasks with their deadlines, state, attempts and history, most urgent first."""
    from sqlalchemy import func, select

    from rating_core.reports.export import callback_rows, write_jsonl
    from rating_core.store.models import CallbackTask

    store = open_store(settings())
    if full_numbers:
        _audit_full_numbers(store, lambda session: session.scalar(select(func.count(CallbackTask.id))) or 0,
                            command="callbacks list", format=fmt)
    with store.sessions() as session:
        count = write_jsonl(callback_rows(session, now=datetime.now(timezone.utc), full_numbers=full_numbers),
                            sys.stdout)
    log.info("listed %d task(s)", count)


@callbacks.command("run-due")
@click.option("--now", "now_iso", help="Pretend it is this ISO time (for checking).")
def callbacks_run_due(now_iso: str | None) -> None:
    """One sweep: recompute deadlines, escalate, enqueue what is due (what `hotline-eval cron` runs every minute)."""
    from callback.jobs import sweep_due

    now = _iso_time(now_iso, "--now")
    try:
        result = sweep_due(now.isoformat())
    except Exception as exc:  # Redis down: say so; the tasks stay due in the store.
        raise click.ClickException(f"sweep failed: {exc}") from exc
    click.echo(" ".join(f"{k}={v}" for k, v in result.items()))


@main.command()
@click.option("--burst", is_flag=True, help="Run the jobs waiting now, then exit.")
@click.option("--queue", "queues", multiple=True, type=click.Choice(["callbacks", "transcripts"]),
              help="Queues to serve, first first (default: callbacks, then transcripts).")
# Also from the environment: the unit is a template, and each instance's drop-in gives its own port
# (deploy/systemd/hotline-eval-worker@callbacks.service.d/metrics.conf).
@click.option("--metrics", "metrics_at", default=None, metavar="HOST:PORT", envvar="HOTLINE_EVAL_WORKER_METRICS",
              show_envvar=True, help=METRICS_HELP)
def worker(burst: bool, queues: tuple[str, ...], metrics_at: str | None) -> None:
    """Run an RQ worker (with the scheduler) for the callback queue and the voice message transcripts."""
    from callback.jobs import QUEUE_NAME, TRANSCRIPT_QUEUE_NAME
    from callback.rq_worker import run_worker

    require_number_key(open_store(settings()))
    _serve_metrics(metrics_at)
    run_worker(queues or (QUEUE_NAME, TRANSCRIPT_QUEUE_NAME), burst=burst)


@main.command()
def cron() -> None:
    """Run the periodic passes (callback.cron_config): what `rq cron callback.cron_config` runs, logging as every
    other hotline-eval process does (zoned stamps, --log-format json). Exactly one per deployment."""
    from rq.cron import CronScheduler

    from callback.jobs import redis_connection

    # Our handlers are on the root logger already, so the scheduler adds none of its own (time-only stamps).
    scheduler = CronScheduler(connection=redis_connection(settings().redis_url),
                              logging_level=logging.getLogger().level)
    scheduler.load_config_from_file("callback.cron_config")
    scheduler.start()  # until SIGTERM or SIGINT, which it handles itself


@main.command()
@click.option("--metrics", "metrics_at", default=None, metavar="HOST:PORT", help=METRICS_HELP)
def dialer(metrics_at: str | None) -> None:
    """Run the callback dialer: one AMI connection, Originates for queued attempts."""
    from callback.dialer import AmiSettings, Dialer
    from callback.jobs import callback_queue, enqueue_request

    given = settings()
    if not given.ami_secret:
        raise click.ClickException("AMI_SECRET is not set (the manager.conf secret of the dialer's user)")
    ami = AmiSettings(host=given.ami_host, port=given.ami_port, username=given.ami_username, secret=given.ami_secret)
    store = open_store(given)
    require_number_key(store)
    queue = callback_queue()
    _serve_metrics(metrics_at)

    def on_retry(task_id: int, attempt_seq: int, at: datetime) -> None:
        enqueue_request(queue, task_id, attempt_seq, at=at)

    async def run() -> None:
        await Dialer(store.sessions, store.rules.callback, ami, on_retry=on_retry).run()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


@main.group()
def calendar() -> None:
    """Working-day calendar overrides (holidays and 调休 days the official data lacks)."""


@calendar.command("set")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--workday/--holiday", required=True, help="Whether DAY is a working day.")
@click.option("--note", default=None, help="E.g. the State Council notice it comes from.")
def calendar_set(day: datetime, workday: bool, note: str | None) -> None:
    """Mark DAY as a working day or a holiday, and recompute the open tasks' deadlines."""
    from rating_core.complaints.callback_tasks import recompute_deadlines
    from rating_core.store.models import CalendarOverride

    store = open_store(settings())
    with store.sessions.begin() as session:
        session.merge(CalendarOverride(day=day.date(), is_working_day=workday, note=note))
        session.flush()
        moved = recompute_deadlines(session, store.rules.callback, datetime.now(timezone.utc), "cli:calendar")
    click.echo(f"{day.date()} is now a {'working day' if workday else 'holiday'}; {moved} task deadline(s) moved")


# -- prompts ------------------------------------------------------------------------


@main.command()
@click.option("--listen", default="127.0.0.1:8000", show_default=True, help="HOST:PORT to serve on.")
@click.option("--threads", default=8, show_default=True, help="Worker threads.")
def web(listen: str, threads: int) -> None:
    """Serve the web tool (waitress). Needs HOTLINE_EVAL_SECRET_KEY; put HTTPS in front of it."""
    import waitress

    from protocols.service_manager import notify
    from web import create_app

    host, port = _host_port(listen, 8000)
    store = open_store(settings())
    require_number_key(store)
    try:
        app = create_app(store, settings=settings())
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"web tool on http://{host}:{port}/")
    server = waitress.create_server(app, host=host, port=port, threads=threads)
    server.print_listen("Serving on http://{}:{}")
    # Bound and listening: systemd's start (Type=notify) returns now, not once the process has forked.
    notify(os.environ.get("NOTIFY_SOCKET"), READY="1", STATUS=f"serving on http://{host}:{port}/")
    server.run()


@main.group()
def users() -> None:
    """Web tool users."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["agent", "supervisor", "admin", "unit"]), required=True)
@click.option("--name", "display_name", default="", help="Name shown on pages (default: the username).")
@click.option("--agent-id", help="An agent's 工号.")
@click.option("--unit", help="A unit user's 承办单位.")
@click.password_option(envvar="HOTLINE_EVAL_NEW_PASSWORD", help="Prompted if not given (or HOTLINE_EVAL_NEW_PASSWORD).")
def users_create(username: str, role: str, display_name: str, agent_id: str | None, unit: str | None,
                 password: str) -> None:
    """Create a user; the first admin is made this way."""
    from web.accounts import AccountError, create_user

    store = open_store(settings())
    try:
        with store.sessions.begin() as session:
            create_user(session, username, password, role, display_name, agent_id=agent_id, unit=unit)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"user {username} ({role}) created")


@users.command("password")
@click.argument("username")
@click.password_option(envvar="HOTLINE_EVAL_NEW_PASSWORD", help="Prompted if not given (or HOTLINE_EVAL_NEW_PASSWORD).")
def users_password(username: str, password: str) -> None:
    """Set a user's password; every session the user has open ends at once."""
    from rating_core.store.audit_log import add_entry, command_line_user
    from web.accounts import AccountError, set_password

    store = open_store(settings())
    try:
        with store.sessions.begin() as session:
            set_password(session, username, password)
            add_entry(session, "password_changed", username=command_line_user(), target=f"user:{username}")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"password of {username} set; their open sessions have ended")


@users.command("sign-out")
@click.argument("username")
def users_sign_out(username: str) -> None:
    """End every session a user has open (a lost laptop, a colleague who left)."""
    from sqlalchemy import select

    from rating_core.store.audit_log import add_entry, command_line_user
    from rating_core.store.models import WebUser
    from web.accounts import end_sessions

    store = open_store(settings())
    with store.sessions.begin() as session:
        user_id = session.scalars(select(WebUser.id).where(WebUser.username == username)).one_or_none()
        if user_id is None:
            raise click.ClickException(f"no user {username}")
        end_sessions(session, user_id)
        add_entry(session, "signed_out", username=command_line_user(), target=f"user:{username}")
    click.echo(f"every open session of {username} has ended")


@main.group()
def figures() -> None:
    """The 好差评 figures and scores (seed 003's quarterly table)."""


@figures.command("score")
@click.option("--rules", "scheme_key", required=True, help="Scoring scheme, e.g. zibo-district or zibo-department.")
@click.option("--input", "source", type=click.File("r", encoding="utf-8-sig"), required=True,
              help="CSV: name,A,M,P,I,D,T,B,N1,N2,N3,adjustment (one row per unit; - for stdin).")
@click.option("--output", "target", type=click.File("w", encoding="utf-8"), default="-", show_default=True,
              help="CSV out: the counts, rates (percent), rank, points per item, deduction and score.")
@click.option("--adjustment", "adjustment_kind", type=click.Choice(["delta", "points"]), default="delta",
              show_default=True,
              help="delta: the column adds to the scheme's base (10); points: it is the 加减分 item as a published "
                   "table prints it (base included).")
def figures_score(scheme_key: str, source: TextIO, target: TextIO, adjustment_kind: str) -> None:
    """Score units from their counts: rates, rank points and the composite score, as CSV."""
    import csv
    from dataclasses import replace

    from hotline_eval.figures_csv import read_counts, score_header, score_rows
    from rating_core.reports.cell_text import csv_text
    from rating_core.reports.scoring import ScoringError, load_scoring_rules, score_units

    try:
        rules = load_scoring_rules(settings().scoring_file)
        scheme = rules.scheme(scheme_key)
        units, warnings = read_counts(source)
    except ScoringError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if adjustment_kind == "points":
        units = [replace(unit, adjustment=unit.adjustment - scheme.adjustment.base) for unit in units]
    writer = csv.writer(target, lineterminator="\n")
    writer.writerow(score_header(scheme, rules))
    rows = score_rows(score_units(units, scheme, rules), scheme, rules)
    writer.writerows([csv_text(name), *figures] for name, *figures in rows)  # the unit's name is from outside


@figures.command("rollup")
@click.option("--days", type=int, default=None, help="Also rebuild the last N days (nightly, or after a spool replay).")
def figures_rollup(days: int | None) -> None:
    """Bring the daily figure rollups up to date (the figures page does this before each read)."""
    from zoneinfo import ZoneInfo

    from rating_core.reports.figure_rollups import refresh

    store = open_store(settings())
    with store.sessions.begin() as session:
        rebuilt = refresh(session, ZoneInfo(store.rules.callback.timezone), datetime.now(timezone.utc),
                          days_back=days)
    click.echo(f"rollups: {rebuilt} day(s) rebuilt")


@main.group()
def webhooks() -> None:
    """Outbound webhooks (Standard Webhooks) to the platforms."""


@webhooks.command("add")
@click.argument("url")
@click.option("--events", required=True, help="Comma-separated event types, or * for all.")
@click.option("--secret", envvar="HOTLINE_EVAL_WEBHOOK_SECRET", help="whsec_… (default: a new one, printed once).")
@click.option("--profile", "profile_name", default="gbt39046", show_default=True,
              help="The body's format: a shipped profile (webhooks profiles) or a profile .yaml file's path.")
def webhooks_add(url: str, events: str, secret: str | None, profile_name: str) -> None:
    """Subscribe an endpoint."""
    from rating_core.outbox.webhook_endpoints import EndpointError, add_endpoint

    store = open_store(settings())
    try:
        with store.sessions.begin() as session:
            endpoint = add_endpoint(session, url, [e.strip() for e in events.split(",") if e.strip()],
                                    datetime.now(timezone.utc), profile=profile_name, secret=secret)
            endpoint_id, made, profile = endpoint.id, endpoint.secret, endpoint.profile
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"endpoint {endpoint_id}: {url} (profile {profile})")
    if not secret:
        click.echo(f"secret (give it to the receiver; it is not shown again): {made}")


@webhooks.command("set-profile")
@click.argument("endpoint_id", type=int)
@click.argument("profile_name", metavar="PROFILE")
def webhooks_set_profile(endpoint_id: int, profile_name: str) -> None:
    """Send an endpoint's events in another profile from now on (what waits, held ones too, goes in it)."""
    from rating_core.outbox.webhook_endpoints import EndpointError, set_profile

    store = open_store(settings())
    try:
        with store.sessions.begin() as session:
            profile = set_profile(session, endpoint_id, profile_name).profile
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"endpoint {endpoint_id}: profile {profile}")


@webhooks.command("list")
def webhooks_list() -> None:
    """Endpoints with their deliveries by status, then the held deliveries with their reasons and the dead ones."""
    from sqlalchemy import func, select

    from rating_core.outbox.delivery_states import DeliveryStatus
    from rating_core.store.models import OutboxEvent, WebhookDelivery, WebhookEndpoint

    store = open_store(settings())
    with store.sessions() as session:
        for endpoint in session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)):
            counts: dict[str, int] = {status: count for status, count in session.execute(
                select(WebhookDelivery.status, func.count()).where(WebhookDelivery.endpoint_id == endpoint.id)
                .group_by(WebhookDelivery.status))}
            state = "active" if endpoint.active else f"disabled ({endpoint.disabled_reason})"
            click.echo(f"{endpoint.id}  {endpoint.url}  {state}  profile={endpoint.profile}  "
                       f"events={','.join(endpoint.event_types)}  "
                       + "  ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        held = session.execute(
            select(OutboxEvent.event_id, OutboxEvent.type, WebhookDelivery.endpoint_id, WebhookDelivery.held_reasons)
            .join(WebhookDelivery, WebhookDelivery.event_id == OutboxEvent.id)
            .where(WebhookDelivery.status == DeliveryStatus.HELD).order_by(OutboxEvent.id)).all()
        for event_id, event_type, endpoint_id, reasons in held:
            click.echo(f"held  {event_id}  {event_type}  endpoint {endpoint_id}  "
                       + "; ".join((reasons or "").splitlines()))
        dead = session.execute(
            select(OutboxEvent.event_id, OutboxEvent.type, WebhookDelivery.endpoint_id, WebhookDelivery.attempts,
                   WebhookDelivery.last_error)
            .join(WebhookDelivery, WebhookDelivery.event_id == OutboxEvent.id)
            .where(WebhookDelivery.status == DeliveryStatus.DEAD).order_by(OutboxEvent.id)).all()
        for event_id, event_type, endpoint_id, attempts, error in dead:
            click.echo(f"dead  {event_id}  {event_type}  endpoint {endpoint_id}  {attempts} attempts  {error}")


@webhooks.command("deliver")
def webhooks_deliver() -> None:
    """One delivery pass now (what `hotline-eval cron` runs every 10 s)."""
    from callback.jobs import deliver_webhooks

    click.echo(" ".join(f"{k}={v}" for k, v in deliver_webhooks().items()))


@webhooks.command("replay")
@click.option("--event", "event_id", help="One event (its webhook-id), to every endpoint it went to.")
@click.option("--dead", is_flag=True, help="Every dead delivery.")
def webhooks_replay(event_id: str | None, dead: bool) -> None:
    """Send again (same webhook-id, so receivers still apply each event once)."""
    from rating_core.outbox.webhook_endpoints import replay

    if not event_id and not dead:
        raise click.UsageError("give --event ID or --dead")
    store = open_store(settings())
    with store.sessions.begin() as session:
        count = replay(session, event_id=event_id, dead=dead, now=datetime.now(timezone.utc))
    click.echo(f"{count} delivery(ies) queued again")


@webhooks.command("rotate")
@click.argument("endpoint_id", type=int)
@click.option("--overlap-hours", default=24, show_default=True, help="How long the old secret still signs.")
def webhooks_rotate(endpoint_id: int, overlap_hours: int) -> None:
    """A new signing secret; both sign until the overlap ends."""
    from datetime import timedelta

    from rating_core.outbox.webhook_endpoints import EndpointError, rotate_secret

    store = open_store(settings())
    try:
        with store.sessions.begin() as session:
            secret = rotate_secret(session, endpoint_id, datetime.now(timezone.utc),
                                   timedelta(hours=overlap_hours)).secret
    except EndpointError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"new secret (give it to the receiver; it is not shown again): {secret}")


@webhooks.command("profiles")
def webhooks_profiles() -> None:
    """列出随附的报文格式（profile）及各自发送的事件。"""
    from rating_core.outbox.profile import load_profile, shipped_profiles

    for name in shipped_profiles():
        profile = load_profile(name)
        events = "全部事件" if profile.mapping is None else "、".join(profile.mapping.events)
        click.echo(f"{name}  {profile.title}  发送：{events}")


@webhooks.command("render")
@click.option("--profile", "profile_name", required=True,
              help="报文格式：随附格式的名称（见 webhooks profiles），或一个 .yaml 文件的路径。")
@click.option("--rating", "rating_ref", required=True, help="评价的公开编号（public_id）或数字 id。")
@click.option("--event", "event_type", default=None, help="只看这一类事件，如 rating.created。")
def webhooks_render(profile_name: str, rating_ref: str, event_type: str | None) -> None:
    """按某一报文格式生成该评价各事件的报文（JSON），并按其 JSON Schema 校验；有无法生成或不合格的，退出码为 1。"""
    import json

    from sqlalchemy import select

    from rating_core.outbox.bodies import Bodies, Held
    from rating_core.outbox.profile import ProfileError
    from rating_core.outbox.render import deployment_context
    from rating_core.store.models import OutboxEvent, Rating

    given = settings()
    store = open_store(given)
    bodies = Bodies(deployment_context(store.rules, given))
    try:
        bodies.profile(profile_name)
    except ProfileError as exc:
        raise click.ClickException(f"报文格式有误：{exc}") from exc
    with store.sessions() as session:
        ref = rating_ref.strip()
        found = session.get(Rating, int(ref)) if ref.isdigit() else session.scalars(
            select(Rating).where(Rating.public_id == ref)).one_or_none()
        if found is None:
            raise click.ClickException(f"找不到评价 {rating_ref}（请给出 public_id 或数字 id）")
        query = select(OutboxEvent).where(OutboxEvent.rating_id == found.id).order_by(OutboxEvent.id)
        if event_type:
            query = query.where(OutboxEvent.type == event_type)
        events = session.scalars(query).all()
        public_id = found.public_id
        if not events:
            raise click.ClickException(f"评价 {public_id} 没有{f'“{event_type}”' if event_type else ''}事件")
        results, problems = [], []
        for event in events:
            entry: dict[str, object] = {"event_id": event.event_id, "type": event.type}
            try:
                body = bodies.body(profile_name, event)
            except Held as exc:
                entry |= {"body": None, "refused": list(exc.reasons)}
                problems.append(f"{event.event_id}（{event.type}）无法生成：" + "；".join(exc.reasons))
            else:
                entry |= {"body": None if body is None else json.loads(body.text),
                          "schema": "不发送此类事件" if body is None else "通过"}
            results.append(entry)
    click.echo(json.dumps(results, ensure_ascii=False, indent=2))
    if problems:
        click.echo("\n".join(problems), err=True)
        sys.exit(1)


@main.group()
def lifecycle() -> None:
    """What happens to ratings after the call: defaults for 未评价, 补充评价 SMS."""


@lifecycle.command("run")
@click.option("--now", "now_iso", help="ISO time to run as (default: now).")
def lifecycle_run(now_iso: str | None) -> None:
    """One pass: 未评价 calls past their period get the default rating (rules.yaml lifecycle.default_rating)."""
    from callback.jobs import default_unrated_calls

    now = _iso_time(now_iso, "--now")
    click.echo(f"{default_unrated_calls(now.isoformat())} call(s) given the default rating")


@lifecycle.command("sms")
@click.option("--now", "now_iso", help="ISO time to run as (default: now).")
def lifecycle_sms(now_iso: str | None) -> None:
    """One pass: send the 补充评价 SMS that are due (gateway from HOTLINE_EVAL_SMS_URL / _TOKEN)."""
    from callback.jobs import send_sms_reminders

    result = send_sms_reminders(_iso_time(now_iso, "--now").isoformat())
    click.echo(", ".join(f"{name} {count}" for name, count in result.items()))


@main.group()
def retention() -> None:
    """保存期限：清理到期的录音、来电号码和审计日志（rules.yaml 的 retention 一节）。"""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="只统计到期的数量，不删除、不改动任何数据。")
@click.option("--now", "now_iso", help="按此 ISO 时间计算到期（默认：现在）。")
def retention_run(dry_run: bool, now_iso: str | None) -> None:
    """清理一次（hotline-eval cron 每天运行一次）；没有 HOTLINE_EVAL_NUMBER_KEY 时号码不脱敏，退出码为 1。"""
    from rating_core.ratings.retention import run_retention
    from rating_core.ratings.retention_files import RetentionPlaces

    given = settings()
    store = open_store(given)
    now = _iso_time(now_iso, "--now")
    places = RetentionPlaces.under_home(given.home, store.rules)
    # A dry run's session is never committed: whatever it read, it leaves the store as it was.
    with store.sessions() if dry_run else store.sessions.begin() as session:
        report = run_retention(session, store.rules.retention, now, number_key=given.number_key, places=places,
                               dry_run=dry_run)
    if not store.rules.retention.enabled:
        click.echo("保存期限清理未启用（rules.yaml 中 retention.enabled 为 false）")
    for line in report.lines():
        click.echo(line)
    if report.numbers_refused:
        click.echo(report.numbers_refused, err=True)
        sys.exit(1)


@main.group()
def prompts() -> None:
    """The prompt audio."""


def _prompt_profiles(hotlines: tuple[str, ...]) -> list[HotlineProfile]:
    """The profiles whose sounds a prompts command works on; a rules file whose prompts break the policy stops here."""
    try:
        rules = load_rules(settings().rules_file)
        return [rules.hotline(code) for code in hotlines] if hotlines else list(rules.hotlines.values())
    except (RulesError, KeyError) as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from exc


@prompts.command("build")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default: ivr/sounds).")
@click.option("--hotline", "hotlines", multiple=True, help="Only these hotlines.")
@click.option("--recorded", multiple=True, metavar="FOLDER/NAME",
              help="This sound is a recording of its prompt's present text: keep it (e.g. 12345/thanks_negative).")
def prompts_build(out: Path | None, hotlines: tuple[str, ...], recorded: tuple[str, ...]) -> None:
    """Synthesise 8 kHz WAV prompts from the rules' texts (espeak-ng + sox); keeps recordings that still say them."""
    from ivr.prompts import SOUNDS_DIR, PromptBuildError, build_prompts

    profiles = _prompt_profiles(hotlines)
    try:
        built = build_prompts(profiles, out or SOUNDS_DIR, recorded)
    except PromptBuildError as exc:
        raise click.ClickException(str(exc)) from exc
    for prompt in built:
        click.echo(f"{prompt.path}  {prompt.seconds:.2f} s{'  (recording kept)' if prompt.recorded else ''}")


@prompts.command("check")
@click.option("--dir", "sound_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Sound folder (default: ivr/sounds).")
@click.option("--hotline", "hotlines", multiple=True, help="Only these hotlines.")
def prompts_check(sound_dir: Path | None, hotlines: tuple[str, ...]) -> None:
    """Exit 1, naming them, if sounds do not say the rules' present texts (after a text or policy change)."""
    from ivr.prompts import SOUNDS_DIR, PromptBuildError, stale_sounds

    try:
        stale = stale_sounds(_prompt_profiles(hotlines), sound_dir or SOUNDS_DIR)
    except PromptBuildError as exc:
        raise click.ClickException(str(exc)) from exc
    if stale:
        raise click.ClickException("sounds that do not say their text (hotline-eval prompts build):\n  "
                                   + "\n  ".join(stale))
    click.echo("every sound says its prompt's text")


if __name__ == "__main__":
    main()

