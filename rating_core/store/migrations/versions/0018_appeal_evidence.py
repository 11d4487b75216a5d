"""appeal evidence: the files a unit hands in with its appeal (申诉证明材料)

A new table only; the files themselves live under the home folder by random
names. Plain CREATE TABLE and CREATE INDEX, not Alembic's batch mode (see 0017).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('appeal_evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('appeal_id', sa.Integer(), nullable=False),
    sa.Column('original_name', sa.String(length=255), nullable=False),
    sa.Column('stored_name', sa.String(length=64), nullable=False),
    sa.Column('content_type', sa.String(length=128), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('uploaded_by', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['appeal_id'], ['appeals.id'], name=op.f('fk_appeal_evidence_appeal_id_appeals'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appeal_evidence')),
    sa.UniqueConstraint('stored_name', name=op.f('uq_appeal_evidence_stored_name'))
    )
    op.create_index(op.f('ix_appeal_evidence_appeal_id'), 'appeal_evidence', ['appeal_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_appeal_evidence_appeal_id'), table_name='appeal_evidence')
    op.drop_table('appeal_evidence')
