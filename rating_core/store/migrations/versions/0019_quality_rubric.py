"""quality items: the score item by item of the 质检 rubric (rating_core/reports/quality_rubric.yaml)

Items scored before this revision keep their total only (item_scores NULL).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: on SQLite batch mode copies the table and drops the old one (see 0017).


def upgrade() -> None:
    op.add_column('quality_items', sa.Column('item_scores', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('quality_items', 'item_scores')
