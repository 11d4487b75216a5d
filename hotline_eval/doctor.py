"""``hotline-eval doctor``: what a deployment can get wrong before its first call, checked one line at a time.

Each check is a small function from the :class:`Deployment` being looked at to its findings, and
:data:`CHECKS` names them in the order they are run: settings before what they point at, the
store before what is read from it. A check never raises for what it finds (a refused
connection is a finding) and never changes the deployment: it reads, connects, binds and lets go.

A finding is ``ok``, ``warn`` (works, but not as the centre would want: a year without official
holidays, a webhook receiver not answering while deliveries retry) or ``FAIL`` (a call, a rating
or a callback would be lost or refused); only a ``FAIL`` makes the command exit non-zero.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import os
import re
import socket
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from protocols.ami import NEED_DATA, AmiParser, Banner, ConnectionClosed, Message, format_action
from protocols.common import RemoteProtocolError
from rating_core.rules.rulebook import Rules, RulesError, load_rules
from rating_core.rules.settings import Settings

# Where the README has the prompt folder copied or linked on the Asterisk host.
ASTERISK_SOUNDS = Path("/var/lib/asterisk/sounds/hotline-eval")
# Network checks wait this long: a doctor that hangs on a dropped packet is no help.
TIMEOUT_SECONDS = 3.0
# A check's lines name at most this many problems of one kind, then how many more there are.
SHOWN = 3


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    status: Status
    text: str


def ok(text: str) -> Finding:
    return Finding(Status.OK, text)


def warn(text: str) -> Finding:
    return Finding(Status.WARN, text)


def fail(text: str) -> Finding:
    return Finding(Status.FAIL, text)


@dataclass
class Deployment:
    """What the checks look at: the settings (as far as they could be read), and where the servers will listen."""

    settings: Settings
    now: datetime
    # Why the environment's settings were refused, a line per variable; the checks go on with defaults for those.
    settings_problems: list[str] = field(default_factory=list)
    agi_listen: tuple[str, int] = ("127.0.0.1", 4573)
    audiosocket: tuple[str, int] = ("127.0.0.1", 9092)
    # The servers are expected to be up: their ports answer instead of being free.
    running: bool = False
    sounds: Path = ASTERISK_SOUNDS
    sounds_given: bool = False

    @cached_property
    def rules(self) -> Rules | RulesError:
        try:
            return load_rules(self.settings.rules_file)
        except RulesError as exc:
            return exc

    @cached_property
    def engine(self) -> Engine:
        """The store's engine, without a pool (the doctor connects a few times) and with a connect timeout; a
        SQLite file is opened read-write, never made: connecting to a missing one is an error, not a new store."""
        url = make_url(self.settings.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            uri = f"{Path(url.database or '').absolute().as_uri()}?mode=rw"
            return create_engine("sqlite://", poolclass=NullPool, creator=lambda: sqlite3.connect(uri, uri=True))
        connect_args = {"connect_timeout": int(TIMEOUT_SECONDS)} if url.get_backend_name() == "postgresql" else {}
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def read_settings_leniently() -> tuple[Settings, list[str]]:
    """The environment's settings; when some are malformed, why (a line each, naming the variable, never its
    value), and settings with those fields at their defaults so that every other check still runs."""
    try:
        return Settings(), []
    except ValidationError as exc:
        problems, defaults = [], {}
        by_variable = {info.validation_alias: name for name, info in Settings.model_fields.items()}
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(message if message.startswith(where) else f"{where}: {message}")
            name = by_variable.get(where, where)
            if name in Settings.model_fields:
                defaults[name] = Settings.model_fields[name].default
        try:
            return Settings(**defaults), problems
        except ValidationError:
            return Settings.model_construct(), problems


# -- settings, rules ---------------------------------------------------------------------------------------


def check_settings(deployment: Deployment) -> list[Finding]:
    given = deployment.settings
    found = [fail(f"{problem} (the other checks use its default)") for problem in deployment.settings_problems]
    refused = " ".join(deployment.settings_problems)
    if given.secret_key:
        found.append(ok(f"HOTLINE_EVAL_SECRET_KEY set ({len(given.secret_key)} characters)"))
    elif "HOTLINE_EVAL_SECRET_KEY" not in refused:
        found.append(fail("HOTLINE_EVAL_SECRET_KEY is not set: the web tool refuses to start and no 补充评价 link "
                          "can be signed; generate one with python -c \"import secrets; "
                          "print(secrets.token_urlsafe(32))\""))
    found.append(_public_url(given))
    if not given.number_key and "HOTLINE_EVAL_NUMBER_KEY" not in refused:
        found.append(warn("HOTLINE_EVAL_NUMBER_KEY is not set: the retention pass cannot hash callers' numbers "
                          "past their retention (it exits 1) until it is"))
    return found


def _public_url(given: Settings) -> Finding:
    if not given.public_url:
        if given.sms_url:
            return fail("HOTLINE_EVAL_PUBLIC_URL is not set but HOTLINE_EVAL_SMS_URL is: no 补充评价 SMS is sent "
                        "without the address its link points to")
        return ok("HOTLINE_EVAL_PUBLIC_URL not set (no 补充评价 SMS configured)")
    parts = urlsplit(given.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return fail(f"HOTLINE_EVAL_PUBLIC_URL {given.public_url!r} is not an http(s):// address with a host")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        return warn(f"HOTLINE_EVAL_PUBLIC_URL {given.public_url} is plain HTTP: citizens' links should be HTTPS")
    return ok(f"HOTLINE_EVAL_PUBLIC_URL {given.public_url}")


def check_rules(deployment: Deployment) -> list[Finding]:
    from rating_core.reports.scoring import ScoringError, load_scoring_rules

    given = deployment.settings
    rules = deployment.rules
    where = str(given.rules_file) if given.rules_file else "the shipped rules.yaml"
    found = [fail(_naming(where, rules)) if isinstance(rules, RulesError)
             else ok(f"{where}: {len(rules.hotlines)} hotline(s) ({', '.join(rules.hotlines)})")]
    where = str(given.scoring_file) if given.scoring_file else "the shipped scoring_rules.yaml"
    try:
        schemes = load_scoring_rules(given.scoring_file).schemes
    except (ScoringError, OSError) as exc:
        found.append(fail(_naming(where, exc)))
    else:
        found.append(ok(f"{where}: {len(schemes)} scoring scheme(s)"))
    return found


def _naming(where: str, exc: Exception) -> str:
    """The error on one line (a YAML error spans several), naming the file once."""
    text = " ".join(str(exc).split())
    return text if where in text else f"{where}: {text}"


def _rules_or_why(deployment: Deployment) -> Rules | Finding:
    rules = deployment.rules
    return warn("not checked: the rules did not load (see rules)") if isinstance(rules, RulesError) else rules


# -- the store, Redis -----------------------------------------------------------------------------------


def check_database(deployment: Deployment) -> list[Finding]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from rating_core.store.migrate import alembic_config

    url = make_url(deployment.settings.database_url)
    shown = url.render_as_string(hide_password=True)
    # Connecting to a SQLite file that is not there would make an empty one: said instead.
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database or "").exists():
        return [fail(f"no database file at {url.database}: run `hotline-eval db upgrade`")]
    try:
        with deployment.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        return [fail(f"cannot reach {shown}: {first_line(exc)}")]
    heads = ScriptDirectory.from_config(alembic_config(deployment.settings.database_url)).get_heads()
    if current is None:
        return [fail(f"{shown} has no schema: run `hotline-eval db upgrade`")]
    if current not in heads:
        return [fail(f"{shown} is at migration {current}, the latest is {', '.join(heads)}: "
                     f"run `hotline-eval db upgrade`")]
    return [ok(f"{shown} reachable, at the latest migration ({current})")]


def check_redis(deployment: Deployment) -> list[Finding]:
    import redis

    url = deployment.settings.redis_url
    shown = _without_password(url)
    try:
        connection = redis.Redis.from_url(url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS)
        try:
            connection.ping()
        finally:
            connection.close()
    except (redis.RedisError, ValueError) as exc:
        return [fail(f"REDIS_URL {shown}: {exc} (the callback jobs, the sweep and the sign-in limits need it)")]
    return [ok(f"{shown} answers")]


# -- Asterisk: AMI, the servers' ports, the sounds ---------------------------------------------------------


def check_ami(deployment: Deployment) -> list[Finding]:
    given = deployment.settings
    if not given.ami_secret:
        return [warn("no dialer configured (AMI_SECRET is not set): 差评 callbacks are not dialled")]
    rules = _rules_or_why(deployment)
    contexts = dialer_contexts(rules) if isinstance(rules, Rules) else []
    found = asyncio.run(_ami_findings(given, contexts))
    return found if isinstance(rules, Rules) else [*found, rules]


def dialer_contexts(rules: Rules) -> list[str]:
    """The dialplan contexts the dialer's Originates lead to: the two legs', and those of Local/…@context dial
    strings (the agent's, and the citizen's on a test PBX)."""
    dialer = rules.callback.dialer
    contexts = [dialer.agent_first.context, dialer.automated.context]
    for dial_string in (dialer.agent_dial_string, dialer.citizen_dial_string):
        local = re.match(r"Local/[^@]*@([^/,]+)", dial_string)
        if local:
            contexts.append(local.group(1))
    return list(dict.fromkeys(contexts))


async def _ami_findings(given: Settings, contexts: list[str]) -> list[Finding]:
    where = f"{given.ami_host}:{given.ami_port}"
    try:
        session = await asyncio.wait_for(AmiSession.open(given.ami_host, given.ami_port), TIMEOUT_SECONDS)
    except (OSError, asyncio.TimeoutError, RemoteProtocolError, AmiClosed) as exc:
        return [fail(f"cannot reach the AMI at {where}: {str(exc) or type(exc).__name__}")]
    try:
        # Events off: the answers are all the doctor reads.
        login = await session.ask("Login", {"Username": given.ami_username, "Secret": given.ami_secret or "",
                                            "Events": "off"})
        if login.name.lower() != "success":
            return [fail(f"AMI login to {where} as {given.ami_username} refused: {login.get('Message')} "
                         f"(AMI_USERNAME / AMI_SECRET, and the user's permit= in manager.conf)")]
        found = [ok(f"logged in to {where} as {given.ami_username} ({session.banner})")]
        for context in contexts:
            answer, listed = await session.ask_list("ShowDialPlan", {"Context": context}, "ShowDialPlanComplete")
            found.append(_context_finding(context, answer, listed, given.ami_username))
        await session.ask("Logoff")
        return found
    except (OSError, asyncio.TimeoutError, RemoteProtocolError, AmiClosed) as exc:
        return [fail(f"the AMI at {where} stopped answering: {str(exc) or type(exc).__name__}")]
    finally:
        session.close()


def _context_finding(context: str, answer: Message, listed: list[Message], username: str) -> Finding:
    """What ShowDialPlan said of ``context`` (pbx.c, manager_show_dialplan): a list ending in
    ShowDialPlanComplete with its counts, ``Did not find context …`` when there is none, or ``Permission denied``
    when the user's write= has neither ``reporting`` nor ``config`` (the action takes either)."""
    if answer.name.lower() == "success":
        complete = listed[-1] if listed else answer
        if complete.get("ListExtensions") == "0":  # declared, but empty (an include gone, a paste cut short)
            return fail(f"dialplan context {context} has no extension: the dialer's calls would fail "
                        f"(callback/asterisk/extensions.conf has a sample)")
        extensions = _counted(complete.get("ListExtensions") or "?", "extension", "extensions")
        priorities = _counted(complete.get("ListPriorities") or "?", "priority", "priorities")
        return ok(f"dialplan context {context}: {extensions}, {priorities}")
    why = answer.get("Message") or "refused"
    if why.startswith("Did not find context"):
        return fail(f"dialplan context {context} is not in Asterisk's dialplan: the dialer's calls would fail "
                    f"(callback/asterisk/extensions.conf has a sample; match rules.yaml's callback.dialer)")
    return warn(f"dialplan context {context} not checked: ShowDialPlan refused ({why}); the AMI user {username} "
                f"needs reporting in its write= in manager.conf for this check")


def _counted(number: str, one: str, many: str) -> str:
    return f"{number} {one if number == '1' else many}"


class AmiClosed(Exception):
    """Asterisk closed the manager connection."""


class AmiSession:
    """One short AMI conversation over :mod:`protocols.ami`: an action, then its response (and its list of events,
    for an action that answers with one).

    Not :class:`callback.ami_client.AmiClient`: that one keeps a connection up for ever, logging and
    retrying a refused login, where the doctor wants one try and the reason it was refused.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = AmiParser()
        self.banner = ""
        self._ids = (f"doctor-{n}" for n in itertools.count(1))

    @classmethod
    async def open(cls, host: str, port: int) -> AmiSession:
        session = cls(*await asyncio.open_connection(host, port))
        try:
            banner = await session._next()
            if not isinstance(banner, Banner):
                raise RemoteProtocolError("no AMI banner")
            session.banner = banner.text
        except BaseException:
            session.close()
            raise
        return session

    async def ask(self, action: str, fields: dict[str, str] | None = None) -> Message:
        """Send ``action`` and return its response (events and other answers are passed over)."""
        action_id = await self._send(action, fields or {})
        while True:
            message = await asyncio.wait_for(self._next(), TIMEOUT_SECONDS)
            if isinstance(message, Message) and message.is_response and message.action_id == action_id:
                return message

    async def ask_list(self, action: str, fields: dict[str, str], complete: str) -> tuple[Message, list[Message]]:
        """Send an action Asterisk answers with a list (``EventList: start`` on its response, then events carrying
        its ActionID, the last one named ``complete``): the response and the list's events, ``complete`` last.
        An error response has no list. The whole list must come within the timeout, not just each event: a
        doctor fed one event at a time for ever would hang as surely as one fed nothing."""
        async with asyncio.timeout(TIMEOUT_SECONDS):
            response = await self.ask(action, fields)
            listed: list[Message] = []
            if (response.get("EventList") or "").lower() != "start":
                return response, listed
            while not listed or listed[-1].name.lower() != complete.lower():
                message = await self._next()
                if isinstance(message, Message) and message.is_event and message.action_id == response.action_id:
                    listed.append(message)
            return response, listed

    async def _send(self, action: str, fields: dict[str, str]) -> str:
        action_id = next(self._ids)
        self.writer.write(format_action(action, action_id, fields))
        await self.writer.drain()
        return action_id

    async def _next(self) -> Banner | Message:
        while True:
            item = self.parser.next_event()
            if item is NEED_DATA:
                self.parser.receive_data(await self.reader.read(65536))
            elif isinstance(item, ConnectionClosed):
                raise AmiClosed("Asterisk closed the connection")
            elif isinstance(item, Banner | Message):
                return item

    def close(self) -> None:
        self.writer.close()


def check_ports(deployment: Deployment) -> list[Finding]:
    from ivr.service import speech_grammars

    findings = [_port_finding("FastAGI", *deployment.agi_listen, running=deployment.running)]
    rules = _rules_or_why(deployment)
    # `agi` binds the AudioSocket port only when some hotline hears speech with its model here (ivr/service.py).
    if isinstance(rules, Rules) and not speech_grammars(rules, deployment.settings.models_dir)[1]:
        return findings + [ok("AudioSocket: not needed (no hotline hears speech here), so no port is bound")]
    return findings + [_port_finding("AudioSocket", *deployment.audiosocket, running=deployment.running)]


def _port_finding(server: str, host: str, port: int, *, running: bool) -> Finding:
    where = f"{host}:{port}"
    if running:
        target = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
        try:
            socket.create_connection((target, port), timeout=TIMEOUT_SECONDS).close()
        except OSError as exc:
            return fail(f"{server} {where}: nothing answers ({exc.strerror or exc}), though --running says the "
                        f"server is up")
        return ok(f"{server} {where}: a server answers (--running)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As asyncio's servers bind: a port left in TIME_WAIT by a stopped server is free for them too.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return fail(f"{server} {where} cannot be bound ({exc.strerror or exc}): another process holds it, or "
                        f"this deployment's server is already up (then run doctor with --running)")
    return ok(f"{server} {where} is free")


def check_prompts(deployment: Deployment) -> list[Finding]:
    from ivr.prompts import PromptBuildError, stale_sounds

    rules = _rules_or_why(deployment)
    if isinstance(rules, Finding):
        return [rules]
    folder = deployment.sounds
    if not folder.is_dir():
        if deployment.sounds_given:
            return [fail(f"{folder} is not a folder")]
        return [warn(f"{folder} is not on this host: give Asterisk's hotline-eval sound folder with --sounds DIR "
                     f"(a shared mount) to have its prompts checked")]
    try:
        stale = stale_sounds(rules.hotlines.values(), folder)
    except PromptBuildError as exc:
        return [fail(str(exc))]
    if stale:
        more = f" and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
        return [fail(f"{len(stale)} sound(s) in {folder} do not say what the rules say (hotline-eval prompts build, "
                     f"then copy the folder): {'; '.join(stale[:SHOWN])}{more}")]
    return [ok(f"{folder} holds every prompt of {', '.join(rules.hotlines)}, saying the rules' texts")]


# -- this host's folders, speech models ---------------------------------------------------------------------


def check_folders(deployment: Deployment) -> list[Finding]:
    spool = deployment.settings.spool_dir
    found = [_spool_finding(spool)]
    rules = _rules_or_why(deployment)
    if isinstance(rules, Finding):
        return [*found, rules]
    folders: dict[Path, list[str]] = {}
    for hotline in rules.hotlines.values():
        if hotline.voice_message.enabled:
            folders.setdefault(Path(hotline.voice_message.directory), []).append(hotline.code)
    for folder, codes in folders.items():
        whose = f"voice messages of {', '.join(codes)}"
        if not folder.exists():
            found.append(warn(f"{folder} ({whose}) is not on this host: create it on the Asterisk host "
                              f"(install -d -o asterisk -g asterisk {folder}) and mount it here for the web tool "
                              f"and the retention pass"))
        elif not folder.is_dir():
            found.append(fail(f"{folder} ({whose}) is not a folder"))
        elif not os.access(folder, os.W_OK | os.X_OK):
            found.append(warn(f"{folder} ({whose}) is not writable by this user: fine for a read-only mount on "
                              f"the web host, but Asterisk must write it and the retention pass delete from it"))
        else:
            found.append(ok(f"{folder} ({whose}) writable"))
    return found


def _spool_finding(spool: Path) -> Finding:
    what = "spool (the FastAGI server's journal; HOTLINE_EVAL_SPOOL)"
    if spool.exists():
        if not spool.is_dir():
            return fail(f"{spool}: the {what} is not a folder; no rating could be kept")
        if not os.access(spool, os.W_OK | os.X_OK):
            return fail(f"{spool}: the {what} is not writable; no rating could be kept")
        return ok(f"{spool} writable")
    parent = next(p for p in spool.absolute().parents if p.exists())
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return ok(f"{spool} will be made at start (in {parent}, writable)")
    return fail(f"{spool}: the {what} does not exist and cannot be made in {parent}")


def check_speech(deployment: Deployment) -> list[Finding]:
    """What ``models check`` says of each hotline, a failure for every model a hotline needs and lacks."""
    from speech_models.manifests import locate

    rules = _rules_or_why(deployment)
    if isinstance(rules, Finding):
        return [rules]
    models_dir = deployment.settings.models_dir
    needed: dict[str, list[str]] = {}
    for hotline in rules.hotlines.values():
        if hotline.speech.language is not None:
            needed.setdefault(rules.speech_languages[hotline.speech.language].model, []).append(
                f"{hotline.code} hears speech")
        if hotline.voice_message.transcript_model is not None:
            needed.setdefault(hotline.voice_message.transcript_model, []).append(
                f"{hotline.code} transcribes voice messages")
    if not needed:
        return [ok("no hotline hears speech or transcribes voice messages: no model needed")]
    found = []
    for model, uses in needed.items():
        status = locate(model, models_dir, full=True)
        if status.usable:
            found.append(ok(f"{model} ({'; '.join(uses)}): installed in {status.directory}"))
        else:
            why = "; ".join(status.problems[:SHOWN]) or "not installed"
            # A FAIL though the server goes on keys only: callers the rules say are heard would not be.
            found.append(fail(f"{model} ({'; '.join(uses)}): {why} (hotline-eval models fetch {model}, into "
                              f"{models_dir}; or keys only: speech.language null in the rules)"))
    return found


# -- the calendar, the webhook receivers -------------------------------------------------------------------


def check_calendar(deployment: Deployment) -> list[Finding]:
    """This year and the next: known to chinesecalendar, or entered with ``calendar set``; else deadlines in
    working days fall back to Monday–Friday (rating_core.rules.working_days)."""
    from rating_core.store.models import CalendarOverride

    rules = deployment.rules
    zone = ZoneInfo(rules.callback.timezone if isinstance(rules, Rules) else "Asia/Shanghai")
    this_year = deployment.now.astimezone(zone).year
    entered: Counter[int] | None
    try:
        with deployment.engine.connect() as connection:
            entered = Counter(day.year for day in connection.scalars(select(CalendarOverride.day)))
    except SQLAlchemyError:
        entered = None  # the database check says why
    found = []
    for year in (this_year, this_year + 1):
        if _library_knows(year):
            found.append(ok(f"{year}: official holidays and 调休 known to chinesecalendar"))
        elif entered and entered.get(year):
            found.append(ok(f"{year}: not in chinesecalendar; {entered[year]} day(s) entered with calendar set"))
        else:
            unread = " (the store could not be read for calendar set days)" if entered is None else ""
            found.append(warn(f"{year}: no official holidays in chinesecalendar nor entered with calendar set"
                              f"{unread}: deadlines in working days count Monday–Friday; enter the year's "
                              f"holidays and 调休 days (hotline-eval calendar set DAY --holiday|--workday) or "
                              f"upgrade chinesecalendar"))
    return found


def _library_knows(year: int) -> bool:
    import chinese_calendar

    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def check_webhooks(deployment: Deployment) -> list[Finding]:
    import httpx

    from rating_core.store.models import WebhookEndpoint

    try:
        with deployment.engine.connect() as connection:
            endpoints = connection.execute(select(WebhookEndpoint.id, WebhookEndpoint.url)
                                           .where(WebhookEndpoint.active).order_by(WebhookEndpoint.id)).all()
    except SQLAlchemyError:
        return [warn("not checked: the store could not be read (see database)")]
    if not endpoints:
        return [ok("no active endpoint")]
    found = []
    with httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
        for endpoint_id, url in endpoints:
            try:
                # Any answer will do, even 405 to a HEAD: the receiver is there; what it accepts is the delivery's.
                status = client.head(url).status_code
            except httpx.HTTPError as exc:
                why = first_line(exc) or type(exc).__name__
                found.append(warn(f"endpoint {endpoint_id} {url} does not answer ({why}): deliveries retry, "
                                  f"then go dead"))
            else:
                found.append(ok(f"endpoint {endpoint_id} {url} answers (HTTP {status})"))
    return found


# -- the table, and running it ------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[Deployment], list[Finding]]] = {
    "settings": check_settings,
    "rules": check_rules,
    "database": check_database,
    "redis": check_redis,
    "ami": check_ami,
    "ports": check_ports,
    "prompts": check_prompts,
    "folders": check_folders,
    "speech": check_speech,
    "calendar": check_calendar,
    "webhooks": check_webhooks,
}


def run_checks(deployment: Deployment, skip: tuple[str, ...] = ()) -> list[tuple[str, Finding]]:
    """Every check not skipped, in the table's order, with its findings; an exception inside a check is a
    failure of that check (the doctor's own bug must not hide the other checks)."""
    results: list[tuple[str, Finding]] = []
    try:
        for name, check in CHECKS.items():
            if name in skip:
                continue
            try:
                findings = check(deployment)
            except Exception as exc:  # the check's own failure, named by its type
                findings = [fail(f"the check itself failed: {type(exc).__name__}: {exc}")]
            results.extend((name, finding) for finding in findings)
    finally:
        deployment.close()
    return results


def report_lines(results: list[tuple[str, Finding]]) -> list[str]:
    width = max((len(name) for name, _ in results), default=0)
    lines = [f"{finding.status.value:<4}  {name:<{width}}  {finding.text}" for name, finding in results]
    failed = sum(finding.status is Status.FAIL for _, finding in results)
    warned = sum(finding.status is Status.WARN for _, finding in results)
    checks = len(dict.fromkeys(name for name, _ in results))
    lines.append(f"{checks} check(s): {failed} failure(s), {warned} warning(s)")
    return lines


def any_failed(results: list[tuple[str, Finding]]) -> bool:
    return any(finding.status is Status.FAIL for _, finding in results)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def first_line(exc: BaseException) -> str:
    """What went wrong in one line: a database driver's own words where SQLAlchemy wraps them (it adds the
    statement and a link below), else the exception's first line."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else ""
