"""inbound events and case records

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('linkedid', sa.String(length=64), nullable=True),
    sa.Column('uniqueid', sa.String(length=64), nullable=True),
    sa.Column('case_number', sa.String(length=128), nullable=False),
    sa.Column('unit', sa.String(length=256), nullable=True),
    sa.Column('received_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('applied_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_records'))
    )
    with op.batch_alter_table('case_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_records_linkedid'), ['linkedid'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_records_uniqueid'), ['uniqueid'], unique=False)

    op.create_table('inbound_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=48), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbound_events')),
    sa.UniqueConstraint('webhook_id', name=op.f('uq_inbound_events_webhook_id'))
    )


def downgrade() -> None:
    op.drop_table('inbound_events')
    with op.batch_alter_table('case_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_records_uniqueid'))
        batch_op.drop_index(batch_op.f('ix_case_records_linkedid'))

    op.drop_table('case_records')
