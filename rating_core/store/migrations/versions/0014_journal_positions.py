"""how far each IVR journal has been applied, so a replay applies nothing twice

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'journal_positions',
        sa.Column('stream', sa.String(length=128), nullable=False),
        sa.Column('segment', sa.Integer(), nullable=False),
        sa.Column('line', sa.Integer(), nullable=False),
        sa.Column('updated_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('stream', name=op.f('pk_journal_positions')),
    )


def downgrade() -> None:
    op.drop_table('journal_positions')
