"""The security headers every response of the web tool carries: pages, API, downloads, errors and static files.

A handful of fixed headers, set after each request (error pages included),
rather than a library such as Flask-Talisman: the policy is short, fixed and
tested header by header, and Talisman's HTTPS redirect and cookie handling
would duplicate what the deployment's reverse proxy and ``create_app`` do.

The Content-Security-Policy admits scripts and styles from the tool's own
origin only: no inline script, no inline style, no ``eval``. The templates
keep to that (behaviour in ``web/static/*.js``, bound by ``data-`` attributes;
htmx is told not to inject its indicator style nor to evaluate anything).
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",  # data: for the browser's own image placeholders; no remote images are used
    "media-src 'self'",  # recordings, served by the tool itself
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",  # no page, same-site or not, may frame a task page and its 显示完整号码 button
))

# Nothing in the tool uses these browser features; a compromised page cannot either.
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in (
    "accelerometer", "camera", "display-capture", "geolocation", "gyroscope", "magnetometer", "microphone",
    "payment", "usb"))

FIXED_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    # The citizen's /r/<token> link is a credential: it must not travel to another site in a Referer.
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
}

CITIZEN_BLUEPRINT = "rate"

HSTS = "max-age=31536000"  # a year; not includeSubDomains: other services of the same domain are not ours to pin


def register(app: Flask) -> None:
    app.after_request(add_security_headers)


def add_security_headers(response: Response) -> Response:
    for name, value in FIXED_HEADERS.items():
        response.headers[name] = value
    if request.blueprint == CITIZEN_BLUEPRINT:
        # The citizen's /r/ page (a masked number, the call's time) on the citizen's own phone: no shared cache
        # may keep it, but the phone's back button must still show the page just left, which no-store breaks.
        response.headers["Cache-Control"] = "private, no-cache"
    elif request.endpoint != "static":
        # Everything else but the stylesheets and scripts is personal or per-user: a page to a signed-in user, a
        # revealed number, a recording, an evidence file, an API answer. No cache, shared or the browser's, may
        # keep a copy for the next user of the machine.
        response.headers["Cache-Control"] = "no-store"
        response.headers.pop("Expires", None)
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        # Tied to the secure cookie: a deployment that sets it is served over HTTPS (else nobody could sign in),
        # so browsers may be told never to use plain HTTP for it. A deployment on plain HTTP (a test bench,
        # HOTLINE_EVAL_INSECURE_COOKIES) must not get it, or browsers would refuse that host for a year.
        response.headers["Strict-Transport-Security"] = HSTS
    return response
