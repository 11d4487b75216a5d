"""``hotline-eval ratings export``: callers' numbers masked unless asked for, and asking is on the audit log."""

from __future__ import annotations

import csv
import getpass
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from hotline_eval.cli import main
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.store.models import AuditEntry
from web_pages import signed_in

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=timezone.utc)
NUMBERS = ["13900000002", "13900000003", "88001234"]


@pytest.fixture
def calls(store: RatingStore) -> RatingStore:
    """Three rated calls a day apart, from a mobile, another mobile and a landline."""
    events: list[object] = []
    for n, number in enumerate(NUMBERS):
        uid = f"1795600000.{n}"
        events += [CallStarted(uniqueid=uid, hotline="12345", at=T0 + timedelta(days=n), caller_number=number,
                               agent_id="1024"),
                   RatingGiven(uid, "satisfied", "dtmf", T0 + timedelta(days=n, seconds=5))]
    store.apply(events)
    return store


def export(engine: Engine, tmp_path: Path, *args: str) -> Result:
    done = CliRunner().invoke(main, ["ratings", "export", *args], env={
        "DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTLINE_EVAL_HOME": str(tmp_path)})
    assert done.exit_code == 0, done.output
    return done


def audit_entries(store: RatingStore) -> list[AuditEntry]:
    with store.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "export_numbers")))


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_numbers_are_masked_by_default_and_nothing_is_audited(calls: RatingStore, engine: Engine, tmp_path: Path,
                                                              fmt: str) -> None:
    out = export(engine, tmp_path, "--format", fmt).stdout
    rows = (list(csv.DictReader(io.StringIO(out))) if fmt == "csv"
            else [json.loads(line) for line in out.splitlines()])
    assert [row["caller_number"] for row in rows] == ["139****0002", "139****0003", "****1234"]
    assert not any(number in out for number in NUMBERS)
    assert audit_entries(calls) == []


def test_full_numbers_only_when_asked_and_the_export_is_audited(calls: RatingStore, engine: Engine,
                                                                tmp_path: Path) -> None:
    out = export(engine, tmp_path, "--format", "jsonl", "--full-numbers", "--since", "2026-11-21T00:00:00Z").stdout
    assert [json.loads(line)["caller_number"] for line in out.splitlines()] == NUMBERS[1:]
    [entry] = audit_entries(calls)
    assert entry.username == f"cli:{getpass.getuser()}" and entry.role is None and entry.target is None
    assert entry.detail == {"command": "ratings export", "count": 2, "since": "2026-11-21T00:00:00+00:00",
                            "format": "jsonl"}
    export(engine, tmp_path, "--format", "csv", "--full-numbers")
    assert [entry.detail["count"] for entry in audit_entries(calls)] == [2, 3]  # one entry per export


def test_the_audit_page_names_a_command_line_export_in_chinese(web_site, engine: Engine, tmp_path: Path) -> None:
    export(engine, tmp_path, "--full-numbers")
    admin = signed_in(web_site, "admin")
    page = admin.get("/admin/audit?action=export_numbers")
    assert page.status_code == 200
    text = page.data.decode()
    assert "命令行导出完整号码" in text and "条数：1" in text and "格式：csv" in text
    csv_file = admin.get("/admin/audit.csv?action=export_numbers").data.decode("utf-8-sig")
    exported = list(csv.reader(io.StringIO(csv_file)))
    assert [row[3] for row in exported[1:]] == ["命令行导出完整号码"]


def test_callbacks_list_with_full_numbers_is_audited_before_it_prints(calls: RatingStore, engine: Engine,
                                                                     tmp_path: Path) -> None:
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "HOTLINE_EVAL_HOME": str(tmp_path)}
    masked = CliRunner().invoke(main, ["callbacks", "list"], env=env)
    assert masked.exit_code == 0 and audit_entries(calls) == []
    full = CliRunner().invoke(main, ["callbacks", "list", "--full-numbers"], env=env)
    assert full.exit_code == 0, full.output
    [entry] = audit_entries(calls)
    assert entry.username == f"cli:{getpass.getuser()}"
    assert entry.detail == {"command": "callbacks list", "count": 0, "format": "jsonl"}  # satisfied calls: no tasks


def test_callback_rows_mask_the_number_inside_a_dial_string_too(store: RatingStore) -> None:
    from rating_core.complaints.callback_tasks import claim_attempt, request_attempt
    from rating_core.reports.export import callback_rows

    store.apply([CallStarted(uniqueid="1795600001.1", hotline="12345", at=T0, caller_number="13900000009"),
                 RatingGiven("1795600001.1", "very_dissatisfied", "dtmf", T0)])
    with store.sessions.begin() as session:
        attempt = request_attempt(session, store.rules.callback, 1, T0, "t").attempt_id
        assert attempt is not None and claim_attempt(session, attempt, T0, "PJSIP/13900000009@trunk")
    with store.sessions() as session:
        [masked] = callback_rows(session, now=T0)
        [full] = callback_rows(session, now=T0, full_numbers=True)
    assert masked["number"] == "139****0009" and masked["attempts"][0]["dial_string"] == "PJSIP/139****0009@trunk"
    assert "13900000009" not in json.dumps(masked)
    assert full["attempts"][0]["dial_string"] == "PJSIP/13900000009@trunk"
