"""The citizen's 补充评价 page, opened from the SMS link: no login, the link is the credential.

The link is signed, bound to one call, expires with the 补充评价 window and
works once (``rating_core.ratings.supplementary``). The page is small and mobile
first: five stars, the reason tags when the rating is a 差评, free text. The
form carries a CSRF token like every other form (the session cookie holds it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, current_app, render_template, request

from rating_core.ratings.supplementary import LinkRefused, SupplementaryRefused
from rating_core.ratings.supplementary_rating import give_supplementary, rating_page
from web.context import db, store

log = logging.getLogger(__name__)
bp = Blueprint("rate", __name__, url_prefix="/r")


def signed_link(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route whose credential is the signed link in its path (the roles test accepts it)."""
    view.link_auth = "signed-sms-link"  # type: ignore[attr-defined]  # a mark on the view function, read by the route audit
    return view


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _refused(exc: LinkRefused, token: str) -> tuple[str, int]:
    log.info("supplementary page for link %s…: %s (from %s)", token[:8], exc, request.remote_addr)
    return render_template("rate/refused.html", message=str(exc)), 410 if exc.gone else 404


@bp.route("/<token>", methods=["GET", "POST"])
@signed_link
def page(token: str) -> Any:
    rules = store().rules
    secret = current_app.config["SECRET_KEY"]
    session = db()
    chosen: dict[str, Any] = {"level": request.form.get("level", ""), "tags": request.form.getlist("tags"),
                              "text": request.form.get("text", "")}
    error = None
    try:
        if request.method == "POST":
            try:
                rating = give_supplementary(session, rules, token, secret, chosen["level"], chosen["tags"],
                                            chosen["text"], _now())
            except LinkRefused:
                raise
            except SupplementaryRefused as exc:  # the form again, with what to mend
                session.rollback()
                error = str(exc)
            else:
                hotline, level = rules.hotline(rating.call.hotline), rules.level(rating.level)
                session.commit()
                return render_template("rate/thanks.html", hotline=hotline, level=level)
        shown = rating_page(session, rules, token, secret, _now())
    except LinkRefused as exc:
        session.rollback()
        return _refused(exc, token)
    levels = sorted(rules.levels, key=lambda level: level.stars)
    return render_template("rate/page.html", shown=shown, levels=levels, chosen=chosen,
                           error=error), 400 if error else 200
