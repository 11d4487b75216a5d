"""The retention pass: personal information kept only as long as its purpose needs (个人信息保护法 第十九条),
by the periods of the rules' ``retention:`` section (``rating_core.rules.retention_policy``).

One pass, in the caller's transaction: recordings and evidence files deleted
(``retention_files``), callers' numbers replaced by their keyed hash (``retention_numbers``), audit entries
past their period deleted; then one audit entry for each kind of data it purged, by ``system:retention``,
with the counts. A pass with nothing due changes nothing and writes nothing, so a second pass is a no-op.

Without a number key the numbers are left as they are and the pass says why (the rest still runs): a hash
made without the key, or with a key lost later, would never match the number again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rating_core.ratings.retention_files import FileCounts, RetentionPlaces, count, purge_files
from rating_core.ratings.retention_numbers import NumberCounts, count_due, hash_numbers
from rating_core.rules.retention_policy import RetentionPolicy
from rating_core.store.database import rows_changed
from rating_core.store.models import AuditEntry

ACTOR = "system:retention"
AUDIT_ACTION = "retention_purge"
# The audit entries' targets: what each entry says was purged, as the audit page shows it.
RECORDINGS, NUMBERS, AUDIT_LOG = "录音和申诉证明材料", "来电号码", "审计日志"
NO_KEY = "未设置 HOTLINE_EVAL_NUMBER_KEY：到期的来电号码未做脱敏处理（录音等其余部分照常清理）"


@dataclass
class RetentionReport:
    """What a pass purged (or, dry, would purge), kind by kind."""

    files: FileCounts = field(default_factory=FileCounts)
    numbers: NumberCounts = field(default_factory=NumberCounts)
    audit_entries: int = 0
    # Why due numbers were not hashed (no key); None when they were, or none were due.
    numbers_refused: str | None = None
    dry_run: bool = False

    def lines(self) -> list[str]:
        """The counts as the command line prints them (a refusal is said apart: ``numbers_refused``)."""
        files, numbers = self.files, self.numbers
        verb = "将" if self.dry_run else "已"
        lines = [
            f"录音：{verb}删除留言录音 {files.voice_messages} 个、回访录音 {files.callback_recordings} 个、"
            f"转码副本 {files.transcoded_copies} 个、申诉证明材料 {files.evidence_files} 个",
            f"来电号码：{'到期未脱敏' if self.numbers_refused else verb + '脱敏'}来电 {numbers.calls} 条、"
            f"回访任务 {numbers.callback_tasks} 条、短信提醒 {numbers.sms_reminders} 条、"
            f"恶意评价名单 {numbers.blocked_numbers} 条",
            f"审计日志：{verb}删除 {self.audit_entries} 条",
        ]
        if files.kept:
            lines.append(f"未能删除的文件 {files.kept} 个（不在录音目录内或无权删除，详见日志），下次清理时重试")
        return lines


def run_retention(session: Session, policy: RetentionPolicy, now: datetime, *, number_key: str | None,
                  places: RetentionPlaces, dry_run: bool = False) -> RetentionReport:
    """One pass at ``now``: everything past its period purged (``dry_run``: counted only, nothing changed)."""
    report = RetentionReport(dry_run=dry_run)
    if not policy.enabled:
        return report
    recordings_before = policy.recordings.before(now)
    numbers_before = policy.numbers.before(now)
    audit_before = policy.audit_log.before(now)
    report.files = purge_files(session, places, now, recordings_before, dry_run=dry_run)
    if number_key is None or dry_run:
        report.numbers = count_due(session, numbers_before)
        if number_key is None and report.numbers.total:
            report.numbers_refused = NO_KEY
    else:
        report.numbers = hash_numbers(session, number_key, numbers_before)
    old_entries = select(AuditEntry).where(AuditEntry.at < audit_before)
    if dry_run:
        report.audit_entries = count(session, old_entries)
        return report
    report.audit_entries = rows_changed(session.execute(
        delete(AuditEntry).where(AuditEntry.at < audit_before).execution_options(synchronize_session=False)))
    _audit(session, now, report, recordings_before, numbers_before, audit_before)
    return report


def _audit(session: Session, now: datetime, report: RetentionReport, recordings_before: datetime,
           numbers_before: datetime, audit_before: datetime) -> None:
    files = {name: value for name, value in asdict(report.files).items() if name != "kept"}
    kinds = [
        (RECORDINGS, report.files.purged, files, recordings_before),
        (NUMBERS, 0 if report.numbers_refused else report.numbers.total, asdict(report.numbers), numbers_before),
        (AUDIT_LOG, report.audit_entries, {"entries": report.audit_entries}, audit_before),
    ]
    for target, purged, counts, before in kinds:
        if purged:
            session.add(AuditEntry(at=now, username=ACTOR, role=None, action=AUDIT_ACTION, target=target,
                                   detail={**counts, "before": before.isoformat(timespec="seconds")},
                                   remote_addr=None))
    session.flush()
