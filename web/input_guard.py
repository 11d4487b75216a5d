"""What every request is checked for before a view reads it, so that no input can reach a view as a 500.

* No NUL in the path (a 404: it names nothing), the query string or a form (a 400): PostgreSQL's text refuses
  it, so any query a view makes with such a value fails in the driver (SQLite takes it, which is why only one
  database showed it).
* A page's POST is a form. Flask-WTF hands a JSON body to the form instead, and a list or a deeply nested one
  breaks it; only the machine API (``/api/…``) reads JSON, and parses it itself.
* Any JSON Flask does parse (``request.get_json``) nested past the interpreter's recursion limit is a 400, not
  a RecursionError: the standard library's decoder recurses once per level.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request
from flask.json.provider import DefaultJSONProvider

API_PREFIX = "/api/"


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested too deep read as malformed (Flask answers that with a 400)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def register(app: Flask) -> None:
    app.json = BoundedJSONProvider(app)
    app.before_request(refuse_unreadable_input)


def _has_nul(pairs: Any) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in pairs)


def refuse_unreadable_input() -> None:
    if "\x00" in request.path:  # names no page or record (a damaged /r/ link, a recording path)
        abort(404)
    if _has_nul(request.args.items(multi=True)):
        abort(400, description="请求地址中含有不允许的空字符（NUL）")
    if request.path.startswith(API_PREFIX) or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.is_json:
        abort(415, description="此页面只接受表单提交")
    if _has_nul(request.form.items(multi=True)):
        abort(400, description="提交的内容中含有不允许的空字符（NUL）")
