"""retention: when a voice message, a callback recording or an appeal's evidence file was deleted by its period

Callers' numbers need no column: a hashed number says so itself (``hmac:`` and 43 characters, within the
64-character number columns; rating_core.rules.number_hash).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: on SQLite batch mode copies the table and drops the old one (see 0017).


def upgrade() -> None:
    op.add_column('ratings', sa.Column('voice_message_purged_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True))
    op.add_column('callback_attempts', sa.Column('recording_purged_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True))
    op.add_column('appeal_evidence', sa.Column('purged_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('appeal_evidence', 'purged_at')
    op.drop_column('callback_attempts', 'recording_purged_at')
    op.drop_column('ratings', 'voice_message_purged_at')
