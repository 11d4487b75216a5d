"""what a spoken rating was heard as: the recogniser's phrase and confidence

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heard_text', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('heard_confidence', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_column('heard_confidence')
        batch_op.drop_column('heard_text')
