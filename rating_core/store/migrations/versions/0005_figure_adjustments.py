"""figure adjustments

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('figure_adjustments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=32), nullable=False),
    sa.Column('dimension', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('points', sa.Numeric(precision=6, scale=2), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('entered_by', sa.String(length=64), nullable=False),
    sa.Column('entered_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_figure_adjustments'))
    )
    with op.batch_alter_table('figure_adjustments', schema=None) as batch_op:
        batch_op.create_index('ix_figure_adjustments_period_dimension', ['period', 'dimension'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('figure_adjustments', schema=None) as batch_op:
        batch_op.drop_index('ix_figure_adjustments_period_dimension')

    op.drop_table('figure_adjustments')
