"""voice messages in words: the free-mode transcript, its confidence and its progress

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('voice_transcript', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('voice_transcript_confidence', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('voice_transcript_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('voice_transcript_at', rating_core.store.models.UtcDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_column('voice_transcript_at')
        batch_op.drop_column('voice_transcript_status')
        batch_op.drop_column('voice_transcript_confidence')
        batch_op.drop_column('voice_transcript')
