"""The dialer: turns queued callback attempts into AMI Originates and their events into outcomes.

One long-running process holding one AMI connection (``hotline-eval
dialer``). The store says what to dial: RQ jobs queue attempts there, the
dialer claims each with a conditional UPDATE (so an attempt is originated at
most once, across restarts and extra dialers), sends an ``Async`` Originate
named by its own ``ChannelId``, follows the call by ActionID and Linkedid
(:mod:`callback.call_tracker`, which does no I/O: this class feeds it the AMI
events and acts on what it says), and writes the outcome back, where the
policy decides the next try.

After a lost connection or a restart, an attempt that was in flight is never
sent again: it is looked up by its ChannelId with ``Status``, followed if the
call is still up, and otherwise recorded as ``unknown``. An attempt whose
Originate was never written (the connection was already gone when its turn
came) did not happen at all: it goes back to the queue, costing no try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from callback.ami_client import ActionFailed, AmiClient, AmiError, NotConnected
from callback.call_tracker import (
    CallEnded,
    CallTracker,
    CitizenAnswered,
    LiveAttempt,
    OriginateFailed,
    other_channel_id,
    outcome_of,
)
from protocols.ami import Message, originate_fields
from rating_core.complaints.callback_tasks import (
    DIALLABLE_STATES,
    claim_attempt,
    drop_attempt,
    load_calendar,
    next_slot,
    note_answered,
    note_event,
    record_outcome,
    release_attempt,
    stop_dialling,
)
from rating_core.complaints.task_states import LIVE_ATTEMPT_STATUSES
from rating_core.events.call_events import utcnow
from rating_core.rules.callback_policy import CallbackPolicy
from rating_core.rules.log_context import about_task
from rating_core.rules.metrics import DIALER_CHANNELS, DIALER_OUTCOMES
from rating_core.store.batch_lookups import blocked_reason
from rating_core.store.models import CallbackAttempt, CallbackTask

log = logging.getLogger(__name__)

ACTOR = "dialer"
# Hangup causes may trail a failed OriginateResponse by a few milliseconds.
CAUSE_GRACE_SECONDS = 0.3
DEFAULT_AGENT = "queue"


@dataclass(frozen=True)
class AmiSettings:
    host: str
    port: int
    username: str
    secret: str


@dataclass(frozen=True)
class _Placement:
    attempt_id: int
    task_id: int
    channel_id: str
    action_id: str
    mode: str
    fields: list[tuple[str, str]]


class Dialer:
    def __init__(
        self, sessions: sessionmaker[Session], policy: CallbackPolicy, ami: AmiSettings, *,
        poll_interval: float = 1.0, on_retry: Callable[[int, int, datetime], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.poll_interval = poll_interval
        self.on_retry = on_retry
        self.tracker = CallTracker()
        # The calls this dialer follows are its channels in use; read on scrape.
        DIALER_CHANNELS.set_function(lambda: len(self.tracker.live))
        self._background: set[asyncio.Task[None]] = set()
        self.client = AmiClient(ami.host, ami.port, ami.username, ami.secret,
                                on_event=self.handle_event, on_connect=self.reconcile)

    async def run(self) -> None:
        client = asyncio.create_task(self.client.run())
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                if not self.client.connected.is_set():
                    continue
                try:
                    await self.place_queued()
                    await self.check_overdue()
                except AmiError as exc:
                    log.warning("dialer: AMI trouble while placing calls: %s", exc)
                except Exception:
                    log.exception("dialer: placing calls failed; trying again next round")
        finally:
            client.cancel()
            await self.client.stop()
            await asyncio.gather(client, *self._background, return_exceptions=True)

    # -- placing ------------------------------------------------------------

    async def place_queued(self) -> int:
        placements = await asyncio.to_thread(self._claim_batch)
        for placement in placements:
            await self._originate(placement)
        return len(placements)

    def _claim_batch(self) -> list[_Placement]:
        """Claim as many queued attempts as free trunk lines allow (lines counted across all dialers)."""
        dialer = self.policy.dialer
        out: list[_Placement] = []
        now = utcnow()
        with self.sessions.begin() as session:
            # Queued while the dialer was down and the window has closed since: wait for it to open.
            if next_slot(now, self.policy, load_calendar(session)) != now:
                return out
            busy = session.scalar(
                select(func.count()).select_from(CallbackAttempt)
                .where(CallbackAttempt.status.in_(LIVE_ATTEMPT_STATUSES))
            ) or 0
            free = dialer.max_channels - busy
            if free <= 0:
                return out
            queued = session.scalars(
                select(CallbackAttempt).where(CallbackAttempt.status == "queued")
                .order_by(CallbackAttempt.id).limit(free)
            ).all()
            for attempt in queued:
                task = attempt.task
                if not self._still_to_dial(session, task, attempt, now):
                    continue
                if not dialer.valid_number(task.number):
                    record_outcome(session, self.policy, attempt.id, "invalid_number", now, ACTOR,
                                   detail=f"号码格式错误：{task.number!r}")
                    DIALER_OUTCOMES.labels("invalid_number").inc()
                    continue
                fields, dial_string = self._originate_fields(task, attempt)
                if claim_attempt(session, attempt.id, now, dial_string):
                    out.append(_Placement(attempt.id, task.id, attempt.channel_id, attempt.action_id,
                                          task.mode, fields))
        return out

    @staticmethod
    def _still_to_dial(session: Session, task: CallbackTask, attempt: CallbackAttempt, now: datetime) -> bool:
        """Whether a queued attempt may still be sent; if not, it is dropped unsent (and its task stopped).

        The last look before a call leaves: a task settled since its attempt
        was queued (an upheld appeal closed it) is not called, nor is a number
        on the malicious-rater list, however its task came to be dialled (a
        re-ask after rectification, an agent's own call).
        """
        if task.state != "dialing":
            why = f"未拨出：{task.state_reason or '任务已不在呼叫中'}"
            if drop_attempt(session, attempt.id, now, why):
                note_event(session, task, now, ACTOR, "attempt_dropped", attempt=attempt.seq, reason=why)
            return False
        listed = blocked_reason(session, task.number)
        if listed is not None:
            stop_dialling(session, task, now, ACTOR, listed)
            return False
        return True

    def _originate_fields(self, task: CallbackTask, attempt: CallbackAttempt) -> tuple[list[tuple[str, str]], str]:
        dialer = self.policy.dialer
        number = task.number or ""
        if task.mode == "agent_first":
            channel = dialer.agent_dial_string.format(agent=task.assigned_agent or DEFAULT_AGENT)
            leg = dialer.agent_first
        else:
            channel = dialer.citizen_dial_string.format(number=number)
            leg = dialer.automated
        fields = originate_fields(
            channel=channel, context=leg.context, exten=leg.exten, priority=leg.priority,
            caller_id=dialer.caller_id.format(hotline=task.hotline),
            timeout_ms=dialer.ring_timeout_seconds * 1000,
            channel_id=attempt.channel_id, other_channel_id=other_channel_id(attempt.channel_id),
            variables={"CALLBACK_TASK": str(task.id), "CALLBACK_ATTEMPT": str(attempt.id),
                       "CALLBACK_NUMBER": number, "CALLBACK_HOTLINE": task.hotline},
        )
        return fields, channel

    async def _originate(self, placement: _Placement) -> None:
        # Each step that handles one attempt says so for its lines (and the store's in its threads).
        with about_task(placement.task_id):
            await self._originate_attempt(placement)

    async def _originate_attempt(self, placement: _Placement) -> None:
        loop = asyncio.get_running_loop()
        live = LiveAttempt(
            placement.attempt_id, placement.task_id, placement.channel_id, placement.action_id, placement.mode,
            response_deadline=loop.time() + self.policy.dialer.response_timeout_seconds,
        )
        # Followed before sending: events may overtake the response.
        self.tracker.follow(live)
        if not self.client.connected.is_set():
            # Lost during the claim, or reconnected but not yet logged in: an Originate now would go nowhere.
            await self._put_back(live, "not connected to the AMI")
            return
        try:
            await self.client.send("Originate", placement.fields, action_id=placement.action_id)
            log.info("dialer: attempt %s of task %s originated as %s", live.attempt_id, live.task_id, live.channel_id)
        except NotConnected as exc:
            # Raised before a byte was written: certain that Asterisk never saw it.
            await self._put_back(live, str(exc))
        except ActionFailed as exc:
            message = exc.response.get("Message") or "Response: Error"
            log.error("dialer: Asterisk refused the Originate of attempt %s: %s", live.attempt_id, message)
            await self._write_outcome(live, "failed", detail=f"Asterisk拒绝呼叫：{message}")
        except (AmiError, asyncio.TimeoutError) as exc:
            # Unknown whether Asterisk got it: never resend; reconcile() or check_overdue() finds out.
            log.warning("dialer: no response to the Originate of attempt %s (%s); will look it up by ChannelId",
                        live.attempt_id, exc)

    async def _put_back(self, live: LiveAttempt, why: str) -> None:
        """An Originate that was never written: the attempt is queued again, as if never claimed."""
        # Still registered, and finishing, until the store agrees: a reconcile() meanwhile must not
        # look it up, find no call, and record it unknown.
        live.finishing = True

        def write() -> bool:
            with self.sessions.begin() as session:
                return release_attempt(session, live.attempt_id)
        try:
            released = await asyncio.to_thread(write)
        finally:
            self.tracker.forget(live)
        if released:
            log.warning("dialer: attempt %s of task %s not sent (%s); queued again, no try used",
                        live.attempt_id, live.task_id, why)
        else:
            log.warning("dialer: attempt %s of task %s not sent (%s), but it had already moved on; left as it is",
                        live.attempt_id, live.task_id, why)

    # -- following the calls -------------------------------------------------

    def handle_event(self, message: Message) -> None:
        """Every AMI event goes to the tracker; what it says must happen is done here, off the reading loop."""
        step = self.tracker.handle(message)
        if isinstance(step, CitizenAnswered):
            self._spawn(self._note_answered(step.attempt))
        elif isinstance(step, OriginateFailed):
            self._spawn(self._finish_after_grace(step.attempt))
        elif isinstance(step, CallEnded):
            self._spawn(self._finish(step.attempt))

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _note_answered(self, live: LiveAttempt) -> None:
        def write() -> None:
            with self.sessions.begin() as session:
                note_answered(session, live.attempt_id, utcnow())
        with about_task(live.task_id):
            await asyncio.to_thread(write)

    async def _finish_after_grace(self, live: LiveAttempt) -> None:
        await asyncio.sleep(CAUSE_GRACE_SECONDS)
        await self._finish(live)

    async def _finish(self, live: LiveAttempt) -> None:
        if live.finishing:
            return
        live.finishing = True
        end = outcome_of(live)
        with about_task(live.task_id):
            await self._write_outcome(live, end.outcome, reason=end.reason, cause=end.cause,
                                      cause_text=end.cause_text, detail=end.detail)

    async def _write_outcome(self, live: LiveAttempt, outcome: str, *, reason: int | None = None,
                             cause: int | None = None, cause_text: str | None = None,
                             detail: str | None = None) -> None:
        template = self.policy.dialer.recording_file
        recording = template.format(task=live.task_id, attempt=live.attempt_id) \
            if template and outcome == "answered" else None

        def write() -> tuple[str, int, datetime | None]:
            with self.sessions.begin() as session:
                record_outcome(session, self.policy, live.attempt_id, outcome, utcnow(), ACTOR,
                               reason_code=reason, cause=cause, cause_text=cause_text, detail=detail,
                               recording_file=recording)
                task = session.get(CallbackTask, live.task_id)
                return (task.state, task.attempts_made + 1, task.next_attempt_at) if task else ("gone", 0, None)
        try:
            state, next_seq, next_at = await asyncio.to_thread(write)
        finally:
            self.tracker.forget(live)
        DIALER_OUTCOMES.labels(outcome).inc()
        log.info("dialer: attempt %s of task %s ended %s%s", live.attempt_id, live.task_id, outcome,
                 f" ({detail})" if detail else "")
        if state in DIALLABLE_STATES and next_at is not None and self.on_retry is not None:
            try:
                self.on_retry(live.task_id, next_seq, next_at)
            except Exception as exc:  # Redis down: the sweep will find the task from the store.
                log.warning("dialer: could not schedule the retry of task %s: %s", live.task_id, exc)

    # -- recovering ---------------------------------------------------------

    async def check_overdue(self) -> None:
        """Attempts with no OriginateResponse in time: is the call still there?"""
        for live in self.tracker.overdue(asyncio.get_running_loop().time()):
            await self._look_up(live)

    async def reconcile(self) -> None:
        """After (re)connecting: find every attempt left in flight, here or by a dead dialer."""
        def in_flight() -> list[tuple[int, int, str, str, str, str]]:
            with self.sessions() as session:
                rows = session.execute(
                    select(CallbackAttempt.id, CallbackAttempt.task_id, CallbackAttempt.channel_id,
                           CallbackAttempt.action_id, CallbackTask.mode, CallbackAttempt.status)
                    .join(CallbackTask).where(CallbackAttempt.status.in_(LIVE_ATTEMPT_STATUSES))
                ).all()
                return [tuple(row) for row in rows]
        loop = asyncio.get_running_loop()
        for attempt_id, task_id, channel_id, action_id, mode, status in await asyncio.to_thread(in_flight):
            live = self.tracker.get(channel_id)
            if live is None:
                # A stored "answered" means the citizen answered, in either mode.
                answered = status == "answered"
                live = LiveAttempt(attempt_id, task_id, channel_id, action_id, mode, response_deadline=loop.time(),
                                   answered=answered, citizen_status="ANSWER" if answered else None)
                self.tracker.follow(live)
            if not live.finishing:
                await self._look_up(live)

    async def _look_up(self, live: LiveAttempt) -> None:
        with about_task(live.task_id):
            await self._look_up_attempt(live)

    async def _look_up_attempt(self, live: LiveAttempt) -> None:
        try:
            found = await self.client.send_list("Status", {"Channel": live.channel_id}, "StatusComplete")
        except ActionFailed:
            found = []
        if found:
            # Still up: follow it; its Hangup will end the attempt.
            deadline = asyncio.get_running_loop().time() + self.policy.dialer.response_timeout_seconds
            self.tracker.still_up(live, found, deadline)
            log.info("dialer: attempt %s is still up as %s; following it", live.attempt_id, live.channel_id)
            return
        if self.tracker.outcome_known(live):
            # The end was missed but what matters is known: the failure's reason, or that the citizen answered.
            await self._finish(live)
            return
        live.finishing = True
        log.warning("dialer: attempt %s (%s) is not on Asterisk and its end was not seen; outcome unknown",
                    live.attempt_id, live.channel_id)
        await self._write_outcome(live, "unknown", reason=live.reason,
                                  detail="连接中断或拨号器重启，通话已不存在，结果未知；本次尝试不重拨")
