"""How a time reads for a person: in the rules' zone (Beijing time, ``callback.timezone``), in Chinese.

The store keeps UTC; every page, refusal and report a person reads shows the
local time through these few functions, so "10:27" means the same everywhere.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def local_date(at: datetime, zone: ZoneInfo) -> str:
    """``2026年12月9日``."""
    local = at.astimezone(zone)
    return f"{local.year}年{local.month}月{local.day}日"


def local_time(at: datetime, zone: ZoneInfo) -> str:
    """``2026年12月9日 10:27``."""
    local = at.astimezone(zone)
    return f"{local_date(local, zone)} {local:%H:%M}"


def deadline(at: datetime, zone: ZoneInfo) -> str:
    """A deadline as a person says it: one that ends a day (00:00 of the next, or 23:59) is that day's date,
    ``2026年12月8日``; any other is its date and time."""
    local = at.astimezone(zone)
    if local.time() == time(0):
        return local_date(local - timedelta(days=1), zone)
    if local.time() >= time(23, 59):
        return local_date(local, zone)
    return local_time(local, zone)


def span(seconds: float) -> str:
    """A length of time to the minute: ``1天23小时``, ``5小时3分``, ``12分``; under a minute, ``不到1分钟``."""
    minutes = int(abs(seconds) // 60)
    if minutes >= 1440:
        return f"{minutes // 1440}天{minutes % 1440 // 60}小时"
    if minutes >= 60:
        return f"{minutes // 60}小时{minutes % 60}分"
    return f"{minutes}分钟" if minutes else "不到1分钟"


def seconds(value: float | None) -> str:
    """A call's or a recording's length: ``8秒``, ``1分5秒``, ``1小时2分``; a fraction rounds to whole seconds."""
    if value is None:
        return "—"
    whole = int(round(value))
    if whole < 60:
        return f"{whole}秒"
    if whole < 3600:
        return f"{whole // 60}分{whole % 60}秒" if whole % 60 else f"{whole // 60}分钟"
    return f"{whole // 3600}小时{whole % 3600 // 60}分"
