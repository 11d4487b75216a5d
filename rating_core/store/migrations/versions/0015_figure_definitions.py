"""加减分 corrections and withdrawals kept in history; N2/N3 by one definition, so the rollups are rebuilt

N2 and N3 now count only the handling as it stands and the citizen's answer
about it: a rectification a later verdict superseded is no longer done, and a
task's summary of the citizen's answers (resolved, satisfied) given before the
handling it is about is cleared (the answers themselves stay in
callback_answers). The daily rollups are emptied; the next figures read, or
``hotline-eval figures rollup``, rebuilds them from the calls.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('figure_adjustments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('corrects_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('withdrawal_reason', sa.Text(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_figure_adjustments_corrects_id_figure_adjustments'),
                                    'figure_adjustments', ['corrects_id'], ['id'])
    # What the callback loop now does as it goes (callback_tasks._start_handling_anew and
    # _speaks_to_current_handling), done once for the tasks it moved before: a rectification a later verdict
    # superseded no longer counts as done, and an answer counts only if given since the handling it is about.
    op.execute(
        "UPDATE callback_tasks SET rectified_at = NULL "
        "WHERE rectified_at IS NOT NULL AND verified_at IS NOT NULL AND rectified_at < verified_at"
    )
    op.execute(
        "UPDATE callback_tasks SET citizen_resolved = NULL "
        "WHERE citizen_resolved IS NOT NULL AND verified_at IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM callback_answers a WHERE a.task_id = callback_tasks.id "
        "AND a.question = 'resolved' AND a.at >= callback_tasks.verified_at)"
    )
    op.execute(
        "UPDATE callback_tasks SET citizen_satisfied = NULL WHERE citizen_satisfied IS NOT NULL AND ("
        "(rectified_at IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM callback_answers a JOIN callback_attempts t ON t.id = a.attempt_id "
        "WHERE a.task_id = callback_tasks.id AND a.question = 'satisfied' AND t.purpose = 'satisfaction' "
        "AND a.at >= callback_tasks.rectified_at)) "
        "OR (rectified_at IS NULL AND verified_at IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM callback_answers a WHERE a.task_id = callback_tasks.id "
        "AND a.question = 'satisfied' AND a.at >= callback_tasks.verified_at)))"
    )
    op.execute("DELETE FROM figure_rollups")
    op.execute("UPDATE figure_rollup_state SET refreshed_to = NULL")


def downgrade() -> None:
    with op.batch_alter_table('figure_adjustments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_figure_adjustments_corrects_id_figure_adjustments'),
                                 type_='foreignkey')
        batch_op.drop_column('withdrawal_reason')
        batch_op.drop_column('withdrawn_by')
        batch_op.drop_column('withdrawn_at')
        batch_op.drop_column('corrects_id')
