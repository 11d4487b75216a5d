"""The 政务服务差评事项核查整改情况报告单 (seed 000, annex 2), written from a task's record.

The sample form has blanks (×月×日, ×××同志) and alternatives in brackets; here
each is filled from what the store knows: when the 差评 came and for whom,
who verified it (非当事人) and when, the verdict, the rectification and the
citizen's answer. The text is plain data (:class:`Report`); the web tool
renders it as a printable page and as a Word file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rating_core.models import CallbackTask
from rating_core.rules import Rules

# The form is due within 5 days of the rectification's completion (seed 000, 二(二)).
DUE_AFTER = timedelta(days=5)

FINDINGS = {
    "immediate_fix": "经核实，该评价情况清楚、诉求合理，已立行立改。",
    "deadline_fix": "经核实，该评价反映的问题情况复杂、一时难以解决，已说明理由、建立台账、限期整改。",
    "explained": "经核实，该评价反映的诉求缺乏法定依据，已做好解释说明。",
    "not_adopted": "经核实，该评价为误评或恶意评价，评价结果不予采纳。",
}
HANDLING = {
    "immediate_fix": "立行立改",
    "deadline_fix": "限期整改",
    "explained": "做好解释说明",
}


class ReportNotReady(ValueError):
    """The task has no verification yet, so there is nothing to report."""


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


def build_report(task: CallbackTask, rules: Rules, *, verifier: str, organisation: str, addressee: str,
                 today: datetime) -> Report:
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
    findings = FINDINGS[task.verdict] + (f"核实情况：{task.verdict_note}" if task.verdict_note else "")
    if task.verdict == "not_adopted":
        handling = "该评价经核实不予采纳，无需整改。"
    elif task.rectified_at is None:
        limit = f"，整改期限为{_when(task.rectify_by, zone)}" if task.rectify_by else ""
        handling = f"根据核实情况，我单位正在{HANDLING[task.verdict]}{limit}，完成后将向评价人反馈。"
    else:
        reaction = {True: "其对我们的整改措施表示满意。", False: "其对我们的整改措施表示不满意，已报主管跟进。",
                    None: "评价人对整改措施的满意度尚待回访确认。"}[task.citizen_satisfied]
        handling = (f"根据核实情况，我单位已于{_when(task.rectified_at, zone)}向评价人进行了沟通，"
                    f"{HANDLING[task.verdict]}，{reaction}")
    due = (task.rectified_at + DUE_AFTER).astimezone(zone).strftime("%Y年%m月%d日") if task.rectified_at else None
    local_today = today.astimezone(zone)
    return Report(
        title="政务服务差评事项核查整改情况报告单",
        addressee=f"{addressee}：",
        opening=opening,
        sections=(("一、核实情况", findings), ("二、整改情况", handling)),
        signature=organisation,
        dated=f"{local_today.year}年{local_today.month}月{local_today.day}日",
        due=due,
    )
