"""Callback agents (and supervisors looking over their shoulder): the queue, a task, its forms."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timezone
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, joinedload, selectinload
from werkzeug.datastructures import MultiDict

from rating_core.complaints.assignment import assign, claim, claim_for, may_act, release
from rating_core.complaints.callback_tasks import (
    VERIFIABLE_STATES,
    mark_rectified,
    readopt,
    record_answer,
    record_verdict,
    request_attempt,
)
from rating_core.complaints.task_history import actor_name, event_name
from rating_core.complaints.task_search import PAGE_SIZE, Assigned, Scope, TaskQuery, find_tasks
from rating_core.complaints.task_states import OPEN_TASK_STATES, TASK_STATE_NAMES, TaskState
from rating_core.complaints.verification_report import Report, build_report, latest_rectification
from rating_core.reports.figures import FIRST_YEAR, LAST_YEAR
from rating_core.rules.local_time import local_time
from rating_core.rules.number_hash import is_hashed
from rating_core.rules.privacy import HASHED_NUMBER_TEXT
from rating_core.rules.refusals import Refused
from rating_core.store.database import rows_changed
from rating_core.store.models import CallbackAttempt, CallbackTask, Rating, TaskEvent, WebUser
from web.audit import audit, audited
from web.changes import commit_or_flash
from web.context import db, store
from web.downloads import attachment
from web.forms import ActionForm, RectifiedForm, SatisfactionForm, VerdictForm
from web.ids import MAX_ID
from web.numbers import page_number, whole
from web.recordings import serve_recording
from web.report_docx import report_docx
from web.roles import PLAY_RECORDINGS, REVEAL_NUMBER, role_required

bp = Blueprint("agent", __name__, url_prefix="/agent")

CALLBACK_ROLES = ("agent", "supervisor")


def _actor() -> str:
    return f"{current_user.role}:{current_user.agent_id or current_user.username}"


def _agents() -> list[WebUser]:
    """The agents a supervisor can give tasks to (none for an agent, who cannot)."""
    if current_user.role != "supervisor":
        return []
    return list(db().scalars(select(WebUser).where(WebUser.role == "agent", WebUser.active.is_(True),
                                                   WebUser.agent_id.is_not(None)).order_by(WebUser.agent_id)))


def _viewer() -> str | None:
    """The agent whose view of the tasks this is; None for a supervisor, who sees every task."""
    return current_user.agent_id if current_user.role == "agent" else None


def _task_query(args: MultiDict[str, str]) -> TaskQuery:
    """The queue's filters from the URL, so that a supervisor can send a link; a bad one is a 400 in Chinese."""
    def day(name: str) -> date | None:
        value = args.get(name, "").strip()
        try:
            chosen = date.fromisoformat(value) if value else None
        except ValueError:
            abort(400, description=f"日期格式不正确：{value[:20]}（应为 2026-12-01 这样的日期）")
        # The calendar's edges overflow once the day is made a local midnight, or the next day is taken.
        if chosen is not None and not FIRST_YEAR <= chosen.year <= LAST_YEAR:
            abort(400, description=f"日期须在 {FIRST_YEAR} 年至 {LAST_YEAR} 年之间：{value[:20]}")
        return chosen

    def choice(name: str, kind: type[Enum], default: Any) -> Any:
        value = args.get(name, "").strip()
        try:
            return kind(value) if value else default
        except ValueError:
            abort(400, description=f"筛选条件不正确：{value[:20]}")

    page = page_number(args.get("page"))
    hotline = args.get("hotline", "").strip() or None
    if hotline is not None and hotline not in store().rules.hotlines:
        abort(400, description=f"没有这条热线：{hotline[:20]}")
    return TaskQuery(text=args.get("q", "")[:64], hotline=hotline, state=choice("state", TaskState, None),
                     scope=choice("scope", Scope, Scope.OPEN), since=day("since"), until=day("until"),
                     escalated=args.get("escalated") == "1", overdue=args.get("overdue") == "1",
                     assigned=choice("assigned", Assigned, Assigned.ANYONE), page=page)


@bp.get("/")
@role_required(*CALLBACK_ROLES)
def queue() -> Any:
    """Tasks by verification deadline, soonest (or most overdue) first, searched, filtered and paged."""
    query = _task_query(request.args)
    zone = ZoneInfo(store().rules.callback.timezone)
    found = find_tasks(db(), query, agent_id=_viewer(), now=datetime.now(timezone.utc), zone=zone)
    agents = _agents()
    filters = {key: value for key, value in request.args.items() if key != "page" and value}
    return render_template("agent/queue.html", found=found, query=query, filters=filters, agents=agents,
                           hotlines=store().rules.hotlines, states=TASK_STATE_NAMES, open_states=OPEN_TASK_STATES,
                           action_form=ActionForm())


def _task(task_id: int) -> CallbackTask:
    task = db().scalars(
        select(CallbackTask).where(CallbackTask.id == task_id)
        .options(joinedload(CallbackTask.rating).joinedload(Rating.call),
                 selectinload(CallbackTask.attempts), selectinload(CallbackTask.history),
                 selectinload(CallbackTask.answers), selectinload(CallbackTask.rectifications))
    ).one_or_none()
    if task is None:
        abort(404)
    if current_user.role == "agent" and task.rating.call.agent_id == current_user.agent_id:
        abort(403, description="不得回访针对本人服务的差评（非当事人原则）")
    if current_user.role == "agent" and not may_act(task, current_user.agent_id):
        abort(403, description=f"该任务已由坐席 {task.assigned_agent} 认领，请联系主管转交")
    return task


def _act(task_id: int) -> CallbackTask:
    """The task an agent is about to act on, claimed for them if it was nobody's (undone with the action
    if the action is refused)."""
    task = _task(task_id)
    if current_user.role == "agent":
        try:
            claim_for(db(), task, current_user.agent_id, datetime.now(timezone.utc), _actor())
        except Refused as exc:
            db().rollback()
            abort(409, description=str(exc))
    return task


def _reask(task: CallbackTask) -> CallbackAttempt | None:
    """The answered re-ask call whose answer an agent has still to enter (agent-first mode), if any."""
    last = task.attempts[-1] if task.attempts else None
    if (last is None or last.purpose != "satisfaction" or last.outcome != "answered" or task.state != "contacted"
            or any(a.attempt_id == last.id and a.question == "satisfied" for a in task.answers)):
        return None
    return last


def _page(task: CallbackTask, *, verdict: VerdictForm | None = None, rectified: RectifiedForm | None = None,
          satisfaction: SatisfactionForm | None = None, status: int = 200) -> Any:
    return render_template(
        "agent/task.html", task=task, call=task.rating.call, rating=task.rating,
        verdict_form=verdict or VerdictForm(), rectified_form=rectified or RectifiedForm(), action_form=ActionForm(),
        satisfaction_form=satisfaction or SatisfactionForm(), can_enter_satisfaction=_reask(task) is not None,
        can_verify=task.state in VERIFIABLE_STATES, can_report_fix=task.state == TaskState.RECTIFYING,
        can_call=current_user.role == "agent" and task.state in (TaskState.PENDING, TaskState.RECTIFIED),
        can_reveal=current_user.role in REVEAL_NUMBER, can_play=current_user.role in PLAY_RECORDINGS,
        open_states=OPEN_TASK_STATES, agents=_agents(),
    ), status


@bp.get("/tasks/<int:task_id>")
@role_required(*CALLBACK_ROLES)
def task(task_id: int) -> Any:
    return _page(_task(task_id))


@bp.post("/tasks/<int:task_id>/verdict")
@role_required(*CALLBACK_ROLES)
def verdict(task_id: int) -> Any:
    form = VerdictForm()
    found, changed = _act_on_form(task_id)
    if changed:
        form.form_errors.append(changed)
        return _page(found, verdict=form, status=409)
    if not form.validate_on_submit():
        return _page(found, verdict=form, status=400)
    rectify_by = None
    if form.rectify_by.data is not None:
        zone = ZoneInfo(store().rules.callback.timezone)
        rectify_by = datetime.combine(form.rectify_by.data, time(23, 59), zone).astimezone(timezone.utc)
    return _save(task_id, lambda session: record_verdict(
        session, store().rules.callback, task_id, form.verdict.data or "", datetime.now(timezone.utc), _actor(),
        form.note.data or "", rectify_by, done=form.done.data, actor_name=current_user.display_name,
    ), "verdict", form, "核实结论已保存")


@bp.post("/tasks/<int:task_id>/rectified")
@role_required(*CALLBACK_ROLES)
def rectified(task_id: int) -> Any:
    form = RectifiedForm()
    found, changed = _act_on_form(task_id)
    if changed:
        form.form_errors.append(changed)
        return _page(found, rectified=form, status=409)
    if not form.validate_on_submit():
        return _page(found, rectified=form, status=400)
    return _save(task_id, lambda session: mark_rectified(
        session, store().rules.callback, task_id, datetime.now(timezone.utc), _actor(), form.note.data or "",
        actor_name=current_user.display_name,
    ), "rectified", form, "整改情况已保存，系统将回访市民满意度")


def _act_on_form(task_id: int) -> tuple[CallbackTask, str | None]:
    """The task a form acts on, and None when the form was made from the task as it stands; else the task as
    it stands now and what changed since, for the page that shows both (the form keeps what the user typed).

    The version moves in one conditional UPDATE, which holds the row until this request ends: of two people
    saving from one version at once, the second waits, then is told.
    """
    _task(task_id)
    given = whole(request.form.get("version"), most=MAX_ID)
    session = db()
    moved = given is not None and rows_changed(session.execute(
        update(CallbackTask).where(CallbackTask.id == task_id, CallbackTask.version == given)
        .values(version=CallbackTask.version + 1).execution_options(synchronize_session="fetch")))
    if moved:
        return _act(task_id), None
    session.rollback()
    latest = session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id)
                             .order_by(TaskEvent.id.desc()).limit(1)).first()
    zone = ZoneInfo(store().rules.callback.timezone)
    what = (f"{actor_name(latest.actor, _people([latest.actor]))}已于{local_time(latest.at, zone)}"
            f"{event_name(latest.kind)}" if latest else "他人已更新该任务")
    return _task(task_id), f"提交前，{what}。下方是任务的最新情况，您填写的内容已保留，请核对后再提交。"


def _people(actors: list[str]) -> dict[str, str]:
    """工号 and user names of these actors → display names."""
    ids = {actor.partition(":")[2] for actor in actors}
    return {key: user.display_name for user in db().scalars(select(WebUser).where(
        or_(WebUser.agent_id.in_(ids), WebUser.username.in_(ids)))) for key in (user.agent_id, user.username) if key}


def _save(task_id: int, change: Callable[[Session], object], form_name: str, form: FlaskForm, done: str) -> Any:
    """Apply a task form's change; a rule's refusal goes back on the form (400) and nothing is saved."""
    session = db()
    try:
        change(session)
    except Refused as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _page(_task(task_id), status=400, **{form_name: form})
    session.commit()
    flash(done, "info")
    return redirect(url_for("agent.task", task_id=task_id))


@bp.post("/tasks/<int:task_id>/readopt")
@role_required("supervisor")
def readopt_rating(task_id: int) -> Any:
    """恢复采纳: a supervisor finds a non-adoption wrong; the 差评 counts again and its callback reopens."""
    _task(task_id)
    reason = request.form.get("reason", "")
    reopened = commit_or_flash(audited(lambda session: readopt(
        session, store().rules.callback, task_id, datetime.now(timezone.utc), _actor(), reason,
    ), "rating_readopted", f"task:{task_id}", reason=reason.strip()[:500]))
    if reopened is not None:
        flash("已恢复采纳，回访任务重新开启", "info")
    return redirect(url_for("agent.task", task_id=task_id))


@bp.post("/tasks/<int:task_id>/satisfaction")
@role_required(*CALLBACK_ROLES)
def satisfaction(task_id: int) -> Any:
    """The citizen's answer to the re-asked satisfaction, entered by the agent who called."""
    form = SatisfactionForm()
    found, changed = _act_on_form(task_id)
    if changed:
        form.form_errors.append(changed)
        return _page(found, satisfaction=form, status=409)
    attempt = _reask(found)
    if attempt is None:
        form.form_errors.append("没有待录入满意度的回访通话")
        return _page(found, satisfaction=form, status=400)
    if not form.validate_on_submit():
        return _page(found, satisfaction=form, status=400)
    session = db()
    record_answer(session, attempt.id, "satisfied", form.satisfied.data == "yes", "-", attempt.channel_id,
                  datetime.now(timezone.utc), _actor())
    session.commit()
    flash("已记录市民满意度", "info")
    return redirect(url_for("agent.task", task_id=task_id))


@bp.get("/tasks/<int:task_id>/report")
@role_required(*CALLBACK_ROLES)
def report(task_id: int) -> Any:
    """The 核查整改情况报告单, printable."""
    return render_template("agent/report.html", report=_report(_task(task_id)), task_id=task_id)


@bp.get("/tasks/<int:task_id>/report.docx")
@role_required(*CALLBACK_ROLES)
def report_word(task_id: int) -> Any:
    """The 报告单 as a Word file named in Chinese after its 工单号 (or the task, when there is none)."""
    found = _task(task_id)
    data = report_docx(_report(found))
    reference = found.rating.call.case_number or f"回访任务{task_id}"
    return Response(data, mimetype="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    headers={"Content-Disposition": attachment(f"核查整改情况报告单-{reference}.docx",
                                                               f"report-{task_id}.docx")})


def _person(actor: str) -> str:
    """The name a task event's actor ("agent:2001") goes by in the web tool, or its id when it has none."""
    _role, _, who = actor.partition(":")
    user = db().scalars(select(WebUser).where(or_(WebUser.agent_id == who, WebUser.username == who))).first()
    return user.display_name if user else who or actor


def _report(task: CallbackTask) -> Report:
    if task.verdict is None:
        abort(404, description="该差评尚未填写核实结论，暂无报告单")
    verified = next((e for e in reversed(task.history) if e.kind == "verified"), None)
    rectification = latest_rectification(task)
    profile = store().rules.hotlines.get(task.hotline)
    return build_report(
        task, store().rules, verifier=_person(verified.actor) if verified else "—",
        rectifier=_person(rectification.actor) if rectification and not rectification.actor_name else None,
        organisation=current_app.config.get("REPORT_ORGANISATION") or (profile.name if profile else task.hotline),
        addressee=current_app.config.get("REPORT_ADDRESSEE") or "局行风办", today=datetime.now(timezone.utc),
    )


@bp.post("/tasks/<int:task_id>/call")
@role_required("agent")
def call(task_id: int) -> Any:
    """Click-to-call: queue an agent-first attempt for the dialer, ringing this agent first."""
    if not ActionForm().validate_on_submit():
        abort(400)
    automated = _act(task_id).mode == "automated"
    session = db()
    decision = request_attempt(session, store().rules.callback, task_id, datetime.now(timezone.utc), _actor(),
                               agent=current_user.agent_id)
    session.commit()
    if decision.attempt_id is None:
        flash(f"暂不能呼叫：{decision.message}", "error")
    elif automated:
        flash("已发起呼叫：系统将直接呼叫市民并按键核实，结果记入处理记录", "info")
    else:
        flash("已发起呼叫：请接听您的分机，接通后系统将转接市民", "info")
    return redirect(url_for("agent.task", task_id=task_id))


@bp.post("/tasks/<int:task_id>/reveal")
@role_required(*REVEAL_NUMBER)
def reveal(task_id: int) -> Any:
    """The full number, for htmx to swap in; an audited action."""
    found = _act(task_id)
    if is_hashed(found.number):  # past its retention: nothing is left to reveal, so nothing to audit
        return render_template("agent/number.html", number=HASHED_NUMBER_TEXT)
    session = db()
    audit(session, "reveal_number", f"task:{task_id}")
    session.commit()
    return render_template("agent/number.html", number=found.number)


@bp.get("/tasks/<int:task_id>/voice")
@role_required(*PLAY_RECORDINGS)
def voice(task_id: int) -> Any:
    found = _task(task_id)
    return serve_recording(found.rating.voice_message_file, f"task:{task_id}:voice")


@bp.get("/attempts/<int:attempt_id>/recording")
@role_required(*PLAY_RECORDINGS)
def attempt_recording(attempt_id: int) -> Any:
    attempt = db().get(CallbackAttempt, attempt_id)
    if attempt is None:
        abort(404)
    _task(attempt.task_id)
    return serve_recording(attempt.recording_file, f"attempt:{attempt_id}:recording")


@bp.post("/tasks/<int:task_id>/claim")
@role_required("agent")
def claim_task(task_id: int) -> Any:
    """认领: the task becomes this agent's, and no other agent may act on it."""
    if not ActionForm().validate_on_submit():
        abort(400)
    _task(task_id)
    if commit_or_flash(lambda session: claim(session, task_id, current_user.agent_id, datetime.now(timezone.utc),
                                             _actor())) is not None:
        flash("已认领该任务", "info")
    return redirect(url_for("agent.task", task_id=task_id))


@bp.post("/tasks/<int:task_id>/release")
@role_required("agent")
def release_task(task_id: int) -> Any:
    """退回: the task goes back to the team's queue."""
    if not ActionForm().validate_on_submit():
        abort(400)
    _task(task_id)
    if commit_or_flash(lambda session: release(session, task_id, current_user.agent_id, datetime.now(timezone.utc),
                                               _actor())) is not None:
        flash("已退回该任务，其他坐席可以认领", "info")
    return redirect(url_for("agent.queue"))


def _assignee(value: str) -> str | None:
    """The 工号 a supervisor chose (None: back to the team); an unknown one is a 400."""
    agent_id = value.strip()
    if not agent_id:
        return None
    known = db().scalar(select(WebUser.id).where(WebUser.role == "agent", WebUser.agent_id == agent_id,
                                                 WebUser.active.is_(True)))
    if known is None:
        abort(400, description=f"没有工号为 {agent_id[:20]} 的在岗坐席")
    return agent_id


@bp.post("/tasks/<int:task_id>/assign")
@role_required("supervisor")
def assign_task(task_id: int) -> Any:
    """转交: a supervisor gives the task to an agent, or back to the team."""
    if not ActionForm().validate_on_submit():
        abort(400)
    _task(task_id)
    agent_id = _assignee(request.form.get("agent", ""))
    if commit_or_flash(audited(lambda session: assign(session, [task_id], agent_id, datetime.now(timezone.utc),
                                                      _actor()), "task_assigned", f"task:{task_id}",
                               agent=agent_id)) is not None:
        flash(f"已转交坐席 {agent_id}" if agent_id else "已退回待认领", "info")
    return redirect(url_for("agent.task", task_id=task_id))


@bp.post("/assign")
@role_required("supervisor")
def assign_tasks() -> Any:
    """批量分配: the ticked tasks of the queue page to one agent; back to the same filtered page."""
    if not ActionForm().validate_on_submit():
        abort(400)
    ticked = request.form.getlist("task")
    chosen = [number for value in ticked if (number := whole(value, most=MAX_ID)) is not None]
    if len(chosen) != len(ticked) or len(chosen) > PAGE_SIZE:
        abort(400, description="勾选的任务不正确")
    agent_id = _assignee(request.form.get("agent", ""))
    done = commit_or_flash(audited(lambda session: assign(session, chosen, agent_id, datetime.now(timezone.utc),
                                                          _actor()), "tasks_assigned", None, tasks=chosen,
                                   agent=agent_id))
    if done is not None:
        flash(f"已将 {len(done)} 件任务分配给坐席 {agent_id}" if agent_id else f"已将 {len(done)} 件任务退回待认领",
              "info")
    # Back to the page the supervisor ticked them on: its filters, rebuilt as a query string of our own.
    back = urlencode(parse_qsl(request.form.get("back", "")[:1000]))
    return redirect(url_for("agent.queue") + (f"?{back}" if back else ""))
