"""How the store's values read on a page: local (Beijing) times, time left or taken, level, tag, hotline, role,
actor and hangup cause names, call lengths, masked numbers, points and rates. No code a person reads is shown
raw: each kind of name lives as data next to what it names, and is registered here as a Jinja filter."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from flask import Flask, g
from sqlalchemy import inspect, select

from rating_core.complaints.appeal_states import APPEAL_DECISION_NAMES
from rating_core.complaints.hangup_causes import hangup_cause_name
from rating_core.complaints.task_history import TASK_EVENT_NAMES, actor_name
from rating_core.complaints.task_states import ATTEMPT_STATUS_NAMES, OPEN_TASK_STATES, TASK_STATE_NAMES
from rating_core.outbox.delivery_states import DELIVERY_STATUS_NAMES
from rating_core.ratings.transcript_states import TranscriptStatus
from rating_core.reports.scoring import plain_number, rounded
from rating_core.rules.callback_policy import QUESTIONS, VERDICTS
from rating_core.rules.local_time import deadline, local_date, seconds, span
from rating_core.rules.privacy import mask_phone
from rating_core.rules.rulebook import Rules
from rating_core.store.models import CallbackTask, WebUser
from web.audit import target_name
from web.context import db
from web.roles import ROLES

OUTCOME_NAMES = {
    "answered": "接通", "busy": "忙线", "no_answer": "无人接听", "rejected": "拒接", "congestion": "线路拥塞",
    "failed": "呼叫失败", "invalid_number": "空号/号码无效", "unknown": "结果不明", "cancelled": "未拨出（已取消）",
}
# What happened to a callback task, as its history lists it (the names live with the history's code).
EVENT_NAMES = TASK_EVENT_NAMES
PURPOSE_NAMES = {"verify": "核实回访", "satisfaction": "满意度回访"}


def register(app: Flask, rules: Rules) -> None:
    zone = ZoneInfo(rules.callback.timezone)
    levels = {level.code: level.name for level in rules.levels}
    tags = {(code, tag.code): tag.name for code, profile in rules.hotlines.items() for tag in profile.tags}

    def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(zone).strftime(fmt) if value else "—"

    def time_left(due: datetime | None, done: datetime | None = None, started: datetime | None = None) -> str:
        """Before ``done``: 剩余… or 已超期…; once done, how long it took (用时…, and 逾期… when late)."""
        if due is None:
            return "—"
        if done is not None:
            took = f"用时{span((done - started).total_seconds())}" if started is not None else "已完成"
            return took + (f"，逾期{span((done - due).total_seconds())}" if done > due else "")
        left = (due - datetime.now(timezone.utc)).total_seconds()
        return f"剩余{span(left)}" if left > 0 else f"已超期{span(left)}"

    def ended_at(task: CallbackTask) -> datetime | None:
        """When a finished (closed, not dialled) task ended; None while it is open."""
        if task.state in OPEN_TASK_STATES:
            return None
        if "history" not in inspect(task).unloaded:
            moved = [e.at for e in task.history if e.to_state == task.state]
            if moved:
                return moved[-1]
        return task.updated_at

    def people() -> dict[str, str]:
        """工号 and user names → display names, once a request, for the actors a page names."""
        if "display_names" not in g:
            names: dict[str, str] = {}
            for user in db().scalars(select(WebUser)):
                names[user.username] = user.display_name
                if user.agent_id:
                    names[user.agent_id] = user.display_name
            g.display_names = names
        return g.display_names

    def hotline_name(code: str | None) -> str:
        profile = rules.hotlines.get(code or "")
        return profile.name if profile else code or "—"

    app.jinja_env.filters.update(
        local=local, time_left=time_left, masked=mask_phone,
        level_name=lambda code: levels.get(code, code or "未评价"),
        state_name=lambda code: TASK_STATE_NAMES.get(code, code),
        decision_name=lambda code: APPEAL_DECISION_NAMES.get(code, code),
        delivery_status_name=lambda code: DELIVERY_STATUS_NAMES.get(code, code),
        outcome_name=lambda code: OUTCOME_NAMES.get(code, code or "—"),
        attempt_status_name=lambda code: ATTEMPT_STATUS_NAMES.get(code, code or "—"),
        purpose_name=lambda code: PURPOSE_NAMES.get(code, code),
        verdict_name=lambda code: VERDICTS.get(code, code or "—"),
        question_name=lambda code: QUESTIONS.get(code, code),
        event_name=lambda kind: EVENT_NAMES.get(kind, kind),
        actor_name=lambda actor: actor_name(actor, people()),
        actor_role=actor_name,  # by its code alone ("坐席 2001"), beside a name the record keeps
        # A user name a record keeps (entered_by, created_by…), or an actor: the person's display name.
        person=lambda who: (actor_name(who, people()) if who and ":" in who
                            else people().get(who, who) if who else "—"),
        cause_name=hangup_cause_name,
        hotline_name=hotline_name,
        role_name=lambda code: ROLES.get(code, code) if code else "—",
        deadline=lambda value: deadline(value, zone) if value else "—",
        date=lambda value: local_date(value, zone) if value else "—",
        seconds=seconds,
        audit_target=target_name,
        # Points and rates as the 通报表 prints them: rounded half up from the exact Decimal, never via float.
        points=lambda value: str(rounded(value)),
        percent=lambda rate: f"{rounded(rate.value * 100)}%" if rate.defined else "-",
        plain_number=plain_number,
    )
    app.jinja_env.globals.update(tag_name=lambda hotline, code: tags.get((hotline, code), code))
    # The agent's page compares a transcript's status with the enum and says in its own words what it means.
    app.jinja_env.globals["TranscriptStatus"] = TranscriptStatus
    app.jinja_env.globals["ended_at"] = ended_at
    app.jinja_env.globals["is_overdue"] = lambda deadline: (deadline is not None
                                                            and deadline <= datetime.now(timezone.utc))
