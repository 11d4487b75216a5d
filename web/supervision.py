"""The supervisors' blueprint, which several modules fill (the figures, appeals and the list, quality
listening), and what they share: who may enter, the centre's time zone."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint

from web.context import store
from web.roles import READ_FIGURES

bp = Blueprint("supervisor", __name__, url_prefix="/supervisor")

# The figures only; every other supervisor page is the supervisors' alone (README's role table).
FIGURE_ROLES = tuple(sorted(READ_FIGURES))


def zone() -> ZoneInfo:
    return ZoneInfo(store().rules.callback.timezone)
