"""How the store's values read on a page: local times, time left, level and tag names, masked numbers."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from flask import Flask

from rating_core.callback_policy import QUESTIONS, VERDICTS
from rating_core.privacy import mask_phone
from rating_core.rules import Rules

STATE_NAMES = {
    "pending": "待回访", "dialing": "呼叫中", "contacted": "已接通待核实", "rectifying": "限期整改中",
    "rectified": "待回访满意度", "exhausted": "未接通已升级", "closed": "已办结", "not_dialled": "不回访",
}
OUTCOME_NAMES = {
    "answered": "接通", "busy": "忙线", "no_answer": "无人接听", "rejected": "拒接", "congestion": "线路拥塞",
    "failed": "呼叫失败", "invalid_number": "空号/号码无效", "unknown": "结果不明",
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
        span = f"{minutes // 1440}天{minutes % 1440 // 60}小时" if minutes >= 1440 else f"{minutes // 60}小时{minutes % 60}分"
        return f"剩余{span}" if left.total_seconds() > 0 else f"已超期{span}"

    app.jinja_env.filters.update(
        local=local, time_left=time_left, masked=mask_phone,
        level_name=lambda code: levels.get(code, code or "未评价"),
        state_name=lambda code: STATE_NAMES.get(code, code),
        outcome_name=lambda code: OUTCOME_NAMES.get(code, code or "—"),
        purpose_name=lambda code: PURPOSE_NAMES.get(code, code),
        verdict_name=lambda code: VERDICTS.get(code, code or "—"),
        question_name=lambda code: QUESTIONS.get(code, code),
    )
    app.jinja_env.globals.update(tag_name=lambda hotline, code: tags.get((hotline, code), code))
    app.jinja_env.globals["is_overdue"] = lambda deadline: deadline is not None and deadline <= datetime.now(timezone.utc)
