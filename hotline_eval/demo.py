"""The one-command demo: everything a newcomer needs to see the loop work, on SQLite, no PBX."""

from __future__ import annotations

import asyncio
import logging

import click

from hotline_eval.demo_callbacks import run_callbacks
from hotline_eval.demo_sms import run_sms
from hotline_eval.demo_speech import run_speech
from ivr.service import running_ivr
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.reports.export import export_rows
from rating_core.rules.privacy import mask_phone
from rating_core.rules.settings import Settings
from rating_core.store.migrate import upgrade
from simulators.callers import Summary, check_store, plan_calls, simulate


def run_demo(store: RatingStore, journal: Journal, settings: Settings, *, calls: int, concurrency: int, port: int,
             public_url: str) -> int:
    """Return the process exit code: 0 when every simulated call landed as its caller gave it."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    click.echo(f"1. migrating the rating store ({store.engine.url.render_as_string(hide_password=True)})")
    upgrade(store.engine)
    summary = asyncio.run(_serve_and_simulate(store, journal, calls, concurrency, port))
    click.echo("\n3. what the simulated callers gave, checked against the store:")
    for line in summary.lines(store.rules):
        click.echo(f"   {line}")
    click.echo("\n4. the latest calls in the store (hotline-eval ratings export shows them all):")
    with store.sessions() as session:
        rows = list(export_rows(session, store.rules))[-12:]
    for row in rows:
        tags = "、".join(row["reason_tag_names"] or [])
        voice = " +留言" if row["voice_message_file"] else ""
        click.echo(
            f"   {row['uniqueid']:<18} {row['hotline']:<6} {mask_phone(row['caller_number']):<12} "
            f"工号{row['agent_id'] or '-':<5} {row['level_name']:<6} {tags}{voice}  ({row['end_reason']})"
        )
    misheard = run_speech(store, journal, settings.models_dir)
    run_callbacks(store, journal, settings.home)
    run_sms(store, public_url, settings)
    return 0 if not summary.errors and not summary.mismatches and not misheard else 1


async def _serve_and_simulate(store: RatingStore, journal: Journal, calls: int, concurrency: int, port: int) -> Summary:
    async with running_ivr(store, journal, "127.0.0.1", port) as ivr:
        click.echo(f"2. FastAGI server on 127.0.0.1:{ivr.server.port}; "
                   f"{calls} simulated callers, {concurrency} at a time")
        planned = plan_calls(store.rules, calls, seed=2026)
        summary = await simulate("127.0.0.1", ivr.server.port, planned, concurrency=concurrency)
    with store.sessions() as session:
        check_store(session, planned, summary)
    return summary
