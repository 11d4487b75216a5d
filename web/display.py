"""How the store's values read on a page: local times, time left, level and tag names, masked numbers,
points and rates."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from flask import Flask

from rating_core.complaints.appeal_states import APPEAL_DECISION_NAMES
from rating_core.complaints.task_states import TASK_STATE_NAMES
from rating_core.outbox.delivery_states import DELIVERY_STATUS_NAMES
from rating_core.ratings.transcript_states import TranscriptStatus
from rating_core.reports.scoring import plain_number, rounded
from rating_core.rules.callback_policy import QUESTIONS, VERDICTS
from rating_core.rules.privacy import mask_phone
from rating_core.rules.rulebook import Rules

OUTCOME_NAMES = {
    "answered": "接通", "busy": "忙线", "no_answer": "无人接听", "rejected": "拒接", "congestion": "线路拥塞",
    "failed": "呼叫失败", "invalid_number": "空号/号码无效", "unknown": "结果不明", "cancelled": "未拨出（已取消）",
}
# What happened to a callback task, as its history lists it.
EVENT_NAMES = {
    "created": "建立任务", "attempt_requested": "发起呼叫", "attempt_ended": "呼叫结束",
    "attempt_dropped": "取消未拨出的呼叫",
    "contacted": "已接通", "retry_scheduled": "安排重拨", "exhausted": "呼叫次数用完", "escalated": "升级主管",
    "answer": "市民按键回答", "script_ended": "自动回访结束", "verified": "填写核实结论",
    "rectification_reported": "报告整改完成", "rectified": "处理完毕待回访满意度", "closed": "办结",
    "readopted": "恢复采纳", "stopped": "停止回访", "appeal_filed": "提出申诉", "appeal_decided": "申诉复核决定",
    "deadlines_recomputed": "重新计算期限",
}
PURPOSE_NAMES = {"verify": "核实回访", "satisfaction": "满意度回访"}


def register(app: Flask, rules: Rules) -> None:
    zone = ZoneInfo(rules.callback.timezone)
    levels = {level.code: level.name for level in rules.levels}
    tags = {(code, tag.code): tag.name for code, profile in rules.hotlines.items() for tag in profile.tags}

    def local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(zone).strftime(fmt) if value else "—"

    def time_left(deadline: datetime | None) -> str:
        if deadline is None:
            return "—"
        left = deadline - datetime.now(timezone.utc)
        minutes = int(abs(left.total_seconds()) // 60)
        span = (f"{minutes // 1440}天{minutes % 1440 // 60}小时" if minutes >= 1440
                else f"{minutes // 60}小时{minutes % 60}分")
        return f"剩余{span}" if left.total_seconds() > 0 else f"已超期{span}"

    app.jinja_env.filters.update(
        local=local, time_left=time_left, masked=mask_phone,
        level_name=lambda code: levels.get(code, code or "未评价"),
        state_name=lambda code: TASK_STATE_NAMES.get(code, code),
        decision_name=lambda code: APPEAL_DECISION_NAMES.get(code, code),
        delivery_status_name=lambda code: DELIVERY_STATUS_NAMES.get(code, code),
        outcome_name=lambda code: OUTCOME_NAMES.get(code, code or "—"),
        purpose_name=lambda code: PURPOSE_NAMES.get(code, code),
        verdict_name=lambda code: VERDICTS.get(code, code or "—"),
        question_name=lambda code: QUESTIONS.get(code, code),
        event_name=lambda kind: EVENT_NAMES.get(kind, kind),
        # Points and rates as the 通报表 prints them: rounded half up from the exact Decimal, never via float.
        points=lambda value: str(rounded(value)),
        percent=lambda rate: f"{rounded(rate.value * 100)}%" if rate.defined else "-",
        plain_number=plain_number,
    )
    app.jinja_env.globals.update(tag_name=lambda hotline, code: tags.get((hotline, code), code))
    # The agent's page compares a transcript's status with the enum and says in its own words what it means.
    app.jinja_env.globals["TranscriptStatus"] = TranscriptStatus
    app.jinja_env.globals["is_overdue"] = lambda deadline: (deadline is not None
                                                            and deadline <= datetime.now(timezone.utc))
