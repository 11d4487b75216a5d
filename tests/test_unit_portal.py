"""The rated unit's portal: its 差评 list and detail, an appeal with evidence files, who may fetch them, every
refusal leaving nothing behind, and the appeal's progress (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from rating_core.complaints.appeal_evidence import MAX_FILE_BYTES, check_evidence, display_name
from rating_core.complaints.appeals import decide_appeal
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.store.models import Appeal, AppealEvidence, AuditEntry, CallbackTask
from web.accounts import create_user
from web_pages import signed_in, token

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
NUMBER = "13812345678"


def docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    return out.getvalue()


def evidence_dir(site) -> Path:
    return Path(site.app.config["EVIDENCE_DIR"])


def files_on_disk(site) -> list[Path]:
    folder = evidence_dir(site)
    return sorted(folder.iterdir()) if folder.exists() else []


def appeals_and_evidence(site) -> tuple[int, int]:
    with site.store.sessions() as session:
        return (session.scalar(select(func.count()).select_from(Appeal)) or 0,
                session.scalar(select(func.count()).select_from(AppealEvidence)) or 0)


def other_unit(site) -> None:
    with site.store.sessions.begin() as session:
        create_user(session, "other", site.password, "unit", "住建局用户", unit="市住建局")


def post_appeal(client, reason: str = "该事项不属于本单位职责", files: list[tuple[bytes, str]] = (),
                task_id: int = 1, **options):
    page = client.get(f"/unit/tasks/{task_id}")
    data = {"reason": reason, "csrf_token": token(page.data),
            "evidence": [(io.BytesIO(content), name) for content, name in files]}
    return client.post(f"/unit/tasks/{task_id}/appeal", data=data, content_type="multipart/form-data", **options)


def test_the_list_and_the_detail_show_the_差评_but_never_the_number(web_site) -> None:
    with web_site.store.sessions.begin() as session:
        rating = session.get(CallbackTask, 1).rating
        rating.reason_text = "窗口让我跑了三趟"
        rating.voice_transcript, rating.voice_transcript_status = "材料一次说不清楚", "done"
    unit = signed_in(web_site, "unit")
    listed = unit.get("/unit/").data.decode()
    assert 'data-task="1"' in listed and "GD20261120001" in listed and "推诿扯皮/多次跑腿" in listed
    assert 'href="/unit/tasks/1"' in listed and "申诉截止" in listed and "可申诉" in listed
    assert "第 1 / 1 页" in listed

    page = unit.get("/unit/tasks/1")
    detail = page.data.decode()
    assert page.status_code == 200
    for shown in ("GD20261120001", "12345政务服务便民热线", "推诿扯皮/多次跑腿", "窗口让我跑了三趟",
                  "材料一次说不清楚", "申诉截止", "尚未核实", 'enctype="multipart/form-data"',
                  'name="csrf_token"', "<textarea", 'maxlength="2000"', 'type="file"'):
        assert shown in detail, shown
    for hidden in (NUMBER, "138****5678", "5678", "<audio", "/voice"):
        assert hidden not in listed and hidden not in detail, hidden


def test_the_list_is_paged_fifty_at_a_time_newest_first(web_site) -> None:
    now = datetime.now(timezone.utc)
    events: list = []
    for n in range(50):
        uid = f"1795400000.{n}"
        at = now - timedelta(minutes=n)  # all newer than the fixture's 差评 of two hours ago
        events += [CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=f"1390000{n:04d}",
                               agent_id="1024", case_number=f"GD-PAGE-{n:02d}", unit="市人社局"),
                   RatingGiven(uid, "very_dissatisfied", "dtmf", at)]
    web_site.store.apply(events)
    unit = signed_in(web_site, "unit")
    first = unit.get("/unit/").data.decode()
    assert first.count("<tr data-task=") == 50 and "GD-PAGE-00" in first and "GD20261120001" not in first
    assert first.index("GD-PAGE-00") < first.index("GD-PAGE-49") and "共 51 件" in first
    second = unit.get("/unit/?page=2").data.decode()
    assert second.count("<tr data-task=") == 1 and "GD20261120001" in second and "第 2 / 2 页" in second
    assert unit.get("/unit/?page=x").status_code == 400


def test_another_unit_cannot_see_or_appeal_the_差评(web_site) -> None:
    other_unit(web_site)
    other = signed_in(web_site, "other")
    assert "GD20261120001" not in other.get("/unit/").data.decode()
    assert other.get("/unit/tasks/1").status_code == 404
    refused = other.post("/unit/tasks/1/appeal", data={"reason": "不是我们的", "csrf_token": token(
        other.get("/unit/").data)})
    assert refused.status_code == 404
    assert signed_in(web_site, "agent").get("/unit/tasks/1").status_code == 403
    assert appeals_and_evidence(web_site) == (0, 0)


def test_an_appeal_with_two_files_is_stored_and_served_to_the_unit_and_supervisors_only(web_site) -> None:
    unit = signed_in(web_site, "unit")
    done = post_appeal(unit, "已于当日办结并电话答复市民", [(PDF, "办结说明.pdf"), (PNG, "../../回访截图.PNG")],
                       follow_redirects=True)
    page = done.data.decode()
    assert done.status_code == 200 and "申诉已提交，附证明材料 2 个" in page and "复核中" in page
    assert "办结说明.pdf" in page and "回访截图.PNG" in page and "已于当日办结并电话答复市民" in page

    on_disk = files_on_disk(web_site)
    assert len(on_disk) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", path.name) for path in on_disk)
    with web_site.store.sessions() as session:
        rows = session.scalars(select(AppealEvidence).order_by(AppealEvidence.id)).all()
        assert [(r.original_name, r.content_type, r.size, r.uploaded_by) for r in rows] == [
            ("办结说明.pdf", "application/pdf", len(PDF), "unit:unit"),
            ("回访截图.PNG", "image/png", len(PNG), "unit:unit")]
        assert rows[0].sha256 == hashlib.sha256(PDF).hexdigest()
        assert sorted(r.stored_name for r in rows) == [path.name for path in on_disk]
        assert (evidence_dir(web_site) / rows[0].stored_name).read_bytes() == PDF
        appeal_id, first, second = rows[0].appeal_id, rows[0].id, rows[1].id
    path = f"/unit/appeals/{appeal_id}/evidence/{first}"

    served = unit.get(path)
    assert served.status_code == 200 and served.data == PDF
    assert served.mimetype == "application/pdf"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Disposition"].startswith("attachment;")
    assert f"filename*=UTF-8''{quote('办结说明.pdf', safe='')}" in served.headers["Content-Disposition"]

    boss = signed_in(web_site, "boss")
    appeals_page = boss.get("/supervisor/appeals").data.decode()
    assert f'href="{path}"' in appeals_page and "回访截图.PNG" in appeals_page
    assert boss.get(f"/unit/appeals/{appeal_id}/evidence/{second}").data == PNG

    other_unit(web_site)
    for username in ("agent", "other", "admin"):
        refused = signed_in(web_site, username).get(path)
        assert refused.status_code == 403, username
        assert "无权" in refused.data.decode() or "本单位" in refused.data.decode()
    assert unit.get(f"/unit/appeals/{appeal_id + 1}/evidence/{first}").status_code == 404
    assert signed_in(web_site, "admin").get("/supervisor/appeals").status_code == 403  # README's role table

    with web_site.store.sessions() as session:
        downloads = session.scalars(select(AuditEntry).where(AuditEntry.action == "download_evidence")
                                    .order_by(AuditEntry.id)).all()
        assert [(e.username, e.target) for e in downloads] == [
            ("unit", f"appeal:{appeal_id}:evidence:{first}"), ("boss", f"appeal:{appeal_id}:evidence:{second}")]
        filed = session.scalars(select(AuditEntry).where(AuditEntry.action == "appeal_filed")).one()
        assert (filed.username, filed.role, filed.target, filed.detail) == (
            "unit", "unit", f"appeal:{appeal_id}", {"files": 2})

    # Past its retention the file is gone, and the unit is told so rather than to call an administrator.
    with web_site.store.sessions.begin() as session:
        session.get_one(AppealEvidence, first).purged_at = datetime.now(timezone.utc)
    purged = unit.get(path)
    assert purged.status_code == 404 and "证明材料已按保存期限删除" in purged.data.decode()


@pytest.mark.parametrize(
    ("reason", "files", "status", "message"),
    [
        ("理由", [(PDF, f"材料{n}.pdf") for n in range(6)], 400, "证明材料最多 5 个文件，本次选择了 6 个"),
        ("理由", [(PDF + b"0" * MAX_FILE_BYTES, "大文件.pdf")], 400, "“大文件.pdf”超过 10 MB"),
        ("理由", [(b"MZ\x90\x00", "工具.exe")], 400, "“工具.exe”的文件类型不支持"),
        ("理由", [(b"MZ\x90\x00" + b"\x00" * 100, "伪装.pdf")], 400, "“伪装.pdf”的内容不是有效的PDF"),
        ("理由", [(b"PK\x03\x04not really", "表格.xlsx")], 400, "不是有效的Excel 表格"),
        ("理由", [(PDF, "好.pdf"), (b"", "空.txt")], 400, "“空.txt”是空文件"),
        ("   ", [(PDF, "说明.pdf")], 400, "请填写申诉理由"),
        ("长" * 2001, [(PDF, "说明.pdf")], 400, "申诉理由不能超过 2000 字"),
    ],
)
def test_a_refused_appeal_says_why_and_leaves_no_file_and_no_appeal(web_site, reason, files, status,
                                                                    message) -> None:
    response = post_appeal(signed_in(web_site, "unit"), reason, files)
    assert response.status_code == status and message in response.data.decode()
    assert "申诉未提交" in response.data.decode()
    assert files_on_disk(web_site) == [] and appeals_and_evidence(web_site) == (0, 0)


def test_a_late_appeal_is_refused_and_leaves_nothing(web_site) -> None:
    unit = signed_in(web_site, "unit")
    csrf_token = token(unit.get("/unit/tasks/1").data)  # the form was open when the page was loaded
    with web_site.store.sessions.begin() as session:
        session.get(CallbackTask, 1).appeal_file_by = datetime.now(timezone.utc) - timedelta(minutes=1)
    response = unit.post("/unit/tasks/1/appeal", content_type="multipart/form-data", data={
        "reason": "迟到的申诉", "csrf_token": csrf_token, "evidence": [(io.BytesIO(PDF), "说明.pdf")]})
    assert response.status_code == 403 and "已超过申诉期限" in response.data.decode()
    assert "不能再提出申诉" in response.data.decode()  # and the form is gone
    assert files_on_disk(web_site) == [] and appeals_and_evidence(web_site) == (0, 0)


def test_a_second_appeal_is_refused_and_leaves_the_first_as_it_was(web_site) -> None:
    unit = signed_in(web_site, "unit")
    assert post_appeal(unit, "第一次", [(PDF, "一.pdf")]).status_code == 302
    before = files_on_disk(web_site)
    response = unit.post("/unit/tasks/1/appeal", content_type="multipart/form-data", data={
        "reason": "第二次", "csrf_token": token(unit.get("/unit/").data),
        "evidence": [(io.BytesIO(docx()), "二.docx")]})
    assert response.status_code == 409 and "该差评已提出过申诉" in response.data.decode()
    assert files_on_disk(web_site) == before and appeals_and_evidence(web_site) == (1, 1)


def test_a_request_over_the_size_limit_gets_a_chinese_413_and_leaves_nothing(web_site) -> None:
    web_site.app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    response = post_appeal(signed_in(web_site, "unit"), "理由", [(PDF + b"0" * 100_000, "说明.pdf")])
    assert response.status_code == 413 and "上传的文件过大" in response.data.decode()
    assert files_on_disk(web_site) == [] and appeals_and_evidence(web_site) == (0, 0)


def test_the_appeal_shows_its_progress_until_a_supervisor_decides_it(web_site) -> None:
    unit = signed_in(web_site, "unit")
    post_appeal(unit, "市民诉求已解决", [(docx(), "整改报告.docx"), (b"\xd5\xe2\xca\xc7\xce\xc4\xb1\xbe", "记录.txt")])
    page = unit.get("/unit/tasks/1").data.decode()
    assert "已提交" in page and "复核中" in page and "复核结论：待复核" in page and "id=\"appeal-form\"" not in page
    with web_site.store.sessions() as session:
        assert [e.content_type for e in session.scalars(select(AppealEvidence).order_by(AppealEvidence.id))] == [
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "text/plain; charset=gb18030"]
    with web_site.store.sessions.begin() as session:
        decide_appeal(session, 1, False, None, "材料不足以证明已解决", datetime.now(timezone.utc), "supervisor:boss")
    page = unit.get("/unit/tasks/1").data.decode()
    assert "已复核" in page and "申诉不成立" in page and "材料不足以证明已解决" in page
    assert "申诉不成立" in unit.get("/unit/").data.decode()


def test_evidence_names_are_cleaned_and_types_checked_by_content() -> None:
    assert display_name("C:\\Users\\张三\\说明.pdf") == "说明.pdf"
    assert display_name('../../etc/"passwd".txt') == "_passwd_.txt"
    assert display_name("长" * 200 + ".pdf").endswith(".pdf") and len(display_name("长" * 200 + ".pdf")) == 120
    checked = check_evidence([("a.JPG", b"\xff\xd8\xff\xe0rest"), ("b.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1x"),
                              ("c.txt", "中文说明".encode())])
    assert [c.content_type for c in checked] == ["image/jpeg", "application/msword", "text/plain; charset=utf-8"]
