"""callback tasks: a version, moved on by every change, so that two people saving one task are told

Existing tasks start at 0; the next change of each moves it to 1.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not Alembic's batch mode: on SQLite that copies the table and drops the old one, and the
# drop deletes every row that points at a task (history, attempts, answers) through ON DELETE CASCADE.
# SQLite has added and dropped columns in place since 3.35.


def upgrade() -> None:
    op.add_column('callback_tasks', sa.Column('version', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    op.drop_column('callback_tasks', 'version')
