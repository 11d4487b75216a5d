"""session epoch: a counter per web user that ends all of their sessions when it is raised

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: on SQLite batch mode copies the table and drops the old one (see 0017).


def upgrade() -> None:
    op.add_column('web_users', sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    op.drop_column('web_users', 'session_epoch')
