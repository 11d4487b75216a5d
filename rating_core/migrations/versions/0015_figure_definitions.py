"""加减分 corrections and withdrawals kept in history; N2/N3 by one definition, so the rollups are rebuilt

N3 (整改满意数) now counts only the citizen's answer to the re-ask after the
handling was finished. A task's ``citizen_satisfied`` given before its
rectification is cleared (the answer itself stays in callback_answers), and the
daily rollups are emptied so the next figures read rebuilds every day from the
calls.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from alembic import op
import sqlalchemy as sa
import rating_core.models


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('figure_adjustments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('corrects_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_at', rating_core.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('withdrawn_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('withdrawal_reason', sa.Text(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_figure_adjustments_corrects_id_figure_adjustments'),
                                    'figure_adjustments', ['corrects_id'], ['id'])
    op.execute(
        "UPDATE callback_tasks SET citizen_satisfied = NULL "
        "WHERE rectified_at IS NOT NULL AND citizen_satisfied IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM callback_answers a WHERE a.task_id = callback_tasks.id "
        "AND a.question = 'satisfied' AND a.at >= callback_tasks.rectified_at)"
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
