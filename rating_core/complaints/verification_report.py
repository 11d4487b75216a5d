"""The 政务服务差评事项核查整改情况报告单 (seed 000, annex 2), written from a task's record.

The sample form has blanks (×月×日, ×××同志) and alternatives in brackets; here
each is filled from what the store knows, in the annex's order: when the 差评
came and for whom, who verified it (非当事人) and when; 一、核实情况, the
finding; 二、整改情况, what was done, by whom and when (the task's latest
:class:`Rectification`) and what the citizen said when asked again after it.
The text is plain data (:class:`Report`); the web tool renders it as a
printable page and as a Word file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rating_core.rules.refusals import Reason, Refused
from rating_core.rules.rulebook import Rules
from rating_core.store.models import CallbackAnswer, CallbackTask, Rectification

# The form is due within 5 days of the rectification's completion (seed 000, 二(二)).
DUE_AFTER = timedelta(days=5)

# What the verification found, after the one "经核实，" the form opens the section with.
FINDINGS = {
    "immediate_fix": "该评价情况清楚、诉求合理",
    "deadline_fix": "该评价反映的问题情况复杂、一时难以解决",
    "explained": "该评价反映的诉求缺乏法定依据",
    "not_adopted": "该评价为误评或恶意评价，评价结果不予采纳",
}
HANDLING = {
    "immediate_fix": "立行立改",
    "deadline_fix": "说明理由、建立台账、限期整改",
    "explained": "做好解释说明",
}
# A verifier often starts the note with the words the form already printed; they are said once.
_SAID_ALREADY = re.compile(r"^\s*经(?:调查|回访)?核实[，,：:、\s]*")
_SENTENCE_END = ("。", "！", "？", "”", "…", "!", "?")


class ReportNotReady(Refused):
    """The task has no verification yet, so there is nothing to report."""

    reason = Reason.WRONG_STATE


@dataclass(frozen=True)
class Report:
    title: str
    addressee: str
    opening: str
    sections: tuple[tuple[str, str], ...]
    signature: str
    dated: str
    due: str | None


def _when(value: datetime, zone: ZoneInfo) -> str:
    local = value.astimezone(zone)
    return f"{local.month}月{local.day}日{local.hour}时"


def _sentence(text: str) -> str:
    text = text.strip().rstrip("，,；;：:")
    return text if not text or text.endswith(_SENTENCE_END) else f"{text}。"


def latest_rectification(task: CallbackTask) -> Rectification | None:
    """The record of the handling that followed the task's current verdict, if it is done.

    A record from before the current verification belongs to an earlier
    verdict (the citizen was not satisfied and the 差评 was verified again).
    """
    latest = task.rectifications[-1] if task.rectifications else None
    if latest is None or task.verified_at is None or latest.at < task.verified_at:
        return None
    return latest


def reask_answer(task: CallbackTask, since: datetime) -> CallbackAnswer | None:
    """The citizen's answer to the re-ask after the handling finished at ``since``, if given yet.

    Only a 满意 / 不满意 on a callback of purpose "satisfaction" counts: an
    answer on the verification call came before anything was done.
    """
    reasks = {attempt.id for attempt in task.attempts if attempt.purpose == "satisfaction"}
    given = [answer for answer in task.answers
             if answer.question == "satisfied" and answer.attempt_id in reasks and answer.at >= since]
    return given[-1] if given else None


def _done_at(task: CallbackTask, rectification: Rectification | None) -> datetime | None:
    """When the handling of the current verdict was finished; None while it is still under way."""
    done_at = rectification.at if rectification is not None else task.rectified_at
    if done_at is None or task.verified_at is None or done_at < task.verified_at:
        return None
    return done_at


def _finding(verdict: str, note: str | None, rectification: Rectification | None) -> str:
    said = _SAID_ALREADY.sub("", note or "")
    # 立行立改 / 解释说明 entered in one note: it is what was done, and section 二 quotes it.
    if rectification is not None and rectification.what.strip() == (note or "").strip():
        said = ""
    return f"经核实，{FINDINGS[verdict]}。{_sentence(said)}"


def _handling(task: CallbackTask, verdict: str, rectification: Rectification | None, rectifier: str | None,
              zone: ZoneInfo) -> str:
    if verdict == "not_adopted":
        return "该评价经核实不予采纳，无需整改。"
    limit = f"（整改期限为{_when(task.rectify_by, zone)}）" if verdict == "deadline_fix" and task.rectify_by else ""
    done_at = _done_at(task, rectification)
    if done_at is None:
        return f"根据核实情况，我单位已{HANDLING[verdict]}{limit}，整改完成后将向评价人反馈。"
    # A task handled before rectifications were recorded has no record: who and what are not known.
    by = _by(rectification, rectifier) if rectification else ""
    late = "（已超过整改期限）" if rectification is not None and rectification.late else ""
    when = _when(done_at, zone)
    did = {
        "immediate_fix": f"立行立改，{by}于{when}完成整改",
        "deadline_fix": f"{HANDLING[verdict]}{limit}，{by}于{when}报告整改完成{late}",
        "explained": f"{by}于{when}向评价人作了解释说明",
    }[verdict]
    what = f"：{_sentence(rectification.what)}" if rectification is not None else "。"
    done = f"根据核实情况，我单位{did}{what}"
    return done + _reaction(verdict, reask_answer(task, done_at), zone)


def _by(rectification: Rectification, rectifier: str | None) -> str:
    """Who did it, as the form writes a person (由张三同志) or a unit (由市人社局): a record kept before names
    were has only the account, agent:2001 or unit:市人社局."""
    name = rectification.actor_name or rectifier
    if name:
        return f"由{name}同志"
    kind, _, who = rectification.actor.partition(":")
    if kind == "unit" and who:
        return f"由{who}"
    return f"由{who or rectification.actor}同志"


def _reaction(verdict: str, answer: CallbackAnswer | None, zone: ZoneInfo) -> str:
    measures = "解释说明" if verdict == "explained" else "整改措施"
    if answer is None:
        return f"评价人对{measures}的满意度正在回访，结果待回访后补报。"
    if not answer.answer:
        return f"{_when(answer.at, zone)}回访评价人，其对我们的{measures}表示不满意，已报主管跟进处理。"
    agreed = "表示理解和满意" if verdict == "explained" else "表示满意"
    return f"{_when(answer.at, zone)}回访评价人，其对我们的{measures}{agreed}。"


def build_report(task: CallbackTask, rules: Rules, *, verifier: str, organisation: str, addressee: str,
                 today: datetime, rectifier: str | None = None) -> Report:
    """The form for a verified task.

    ``verifier`` names who verified it; ``rectifier`` names who entered the
    latest rectification when the record itself has no name (records made
    from the events of before, by migration 0016).
    """
    if task.verdict is None or task.verified_at is None:
        raise ReportNotReady(f"回访任务 {task.id} 尚未填写核实结论")
    zone = ZoneInfo(rules.callback.timezone)
    rating = task.rating
    call = rating.call
    level = rules.level(rating.level).name
    who = f"坐席工号{call.agent_id}" if call.agent_id else "坐席"
    where = f"{call.queue}队列" if call.queue else f"{task.hotline}热线"
    unit = f"（承办单位：{call.unit}）" if call.unit else ""
    opening = (f"{_when(rating.rated_at, zone)}，我单位{where}{who}同志{unit}受理的来电"
               f"{f'（工单号{call.case_number}）' if call.case_number else ''}，收到“{level}”差评。"
               f"经我单位{verifier}同志（非当事人）于{_when(task.verified_at, zone)}进行回访核实，"
               f"现将相关情况报告如下：")
    rectification = latest_rectification(task)
    done_at = _done_at(task, rectification)
    due = (done_at + DUE_AFTER).astimezone(zone).strftime("%Y年%m月%d日") if done_at else None
    local_today = today.astimezone(zone)
    return Report(
        title="政务服务差评事项核查整改情况报告单",
        addressee=f"{addressee}：",
        opening=opening,
        sections=(("一、核实情况", _finding(task.verdict, task.verdict_note, rectification)),
                  ("二、整改情况", _handling(task, task.verdict, rectification, rectifier, zone))),
        signature=organisation,
        dated=f"{local_today.year}年{local_today.month}月{local_today.day}日",
        due=due,
    )
