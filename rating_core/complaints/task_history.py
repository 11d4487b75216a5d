"""A callback task's history as a person reads it: what each kind of event is called, and who its actor is.

Every :func:`~rating_core.complaints.callback_tasks.note_event` writes a kind
and an actor, both codes (``attempt_requested``, ``system:rq``); the web tool,
the export and anything else a person reads names them from here, so a new
kind or a new actor gets its Chinese name in this one place
(``tests/test_chinese_pages.py`` fails when the code writes one without).
"""

from __future__ import annotations

from collections.abc import Mapping

# What happened to a callback task, as its history lists it.
TASK_EVENT_NAMES = {
    "created": "建立回访任务", "attempt_requested": "发起呼叫", "attempt_ended": "呼叫结束",
    "attempt_dropped": "取消未拨出的呼叫",
    "contacted": "市民已接通", "retry_scheduled": "安排重拨", "exhausted": "呼叫次数已用完", "escalated": "升级主管",
    "answer": "市民按键回答", "script_ended": "自动回访结束", "verified": "填写核实结论",
    "rectification_reported": "报告整改完成", "rectified": "处理完毕，待回访满意度", "closed": "办结",
    "readopted": "恢复采纳", "stopped": "停止回访", "appeal_filed": "提出申诉", "appeal_decided": "申诉复核决定",
    "deadlines_recomputed": "重新计算期限", "deadline_extended": "延长核实期限",
    "claimed": "认领任务", "released": "退回任务", "assigned": "分派任务", "unassigned": "取消分派",
}

# Actors that are a part of the system (or someone outside the web tool), by the exact string the code writes.
# A rating's own events reach the task as ``system:<the event's source>`` (rating_core/ratings/intake.py).
SYSTEM_ACTOR_NAMES = {
    "system:rq": "系统（回访调度）",
    "system:sweep": "系统（定时检查）",
    "system:callback-ivr": "系统（自动回访语音）",
    "system:ivr": "系统（评价语音）",
    "system:sms": "系统（短信补充评价）",
    "system:lifecycle": "系统（逾期默认评价）",
    "system:retention": "系统（按保存期限清理）",
    "system:rule:batch": "系统（批量评价规则）",
    "system:platform": "业务平台",
    "dialer": "系统（外呼）",
    "platform": "业务平台",
    "citizen": "市民",
    "cli:calendar": "系统（调整节假日后）",
    "system:demo": "系统（演示）",
}
# Actors that are a person: ``<role>:<工号 or user name>``.
PERSON_ACTOR_ROLES = {
    "agent": "坐席", "supervisor": "主管", "admin": "管理员", "unit": "承办单位", "cli": "命令行",
}


def actor_name(actor: str | None, people: Mapping[str, str] | None = None) -> str:
    """``system:rq`` → 系统（回访调度）, ``agent:1024`` → 坐席 1024 (坐席 张三（1024）when ``people``, 工号 or
    user name → display name, knows them), ``supervisor:alice`` → 主管 alice; any other system actor → 系统."""
    if not actor:
        return "—"
    if actor in SYSTEM_ACTOR_NAMES:
        return SYSTEM_ACTOR_NAMES[actor]
    role, colon, who = actor.partition(":")
    if colon and role in PERSON_ACTOR_ROLES and who:
        shown = (people or {}).get(who)
        title = PERSON_ACTOR_ROLES[role]
        if shown and shown != who:
            return f"{title} {shown}（{who}）" if role == "agent" else f"{title} {shown}"
        return f"{title} {who}"
    if role == "system":
        return "系统"
    return actor


def event_name(kind: str) -> str:
    return TASK_EVENT_NAMES.get(kind, "其他处理")
