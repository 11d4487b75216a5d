"""supplementary ratings, SMS reminders, batch rule

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sms_reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.String(length=256), nullable=True),
    sa.Column('created_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('lease_until', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('gateway_message_id', sa.String(length=128), nullable=True),
    sa.Column('last_error', sa.String(length=512), nullable=True),
    sa.Column('expires_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('used_at', rating_core.store.models.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], name=op.f('fk_sms_reminders_call_id_calls'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_reminders')),
    sa.UniqueConstraint('call_id', name=op.f('uq_sms_reminders_call_id')),
    sa.UniqueConstraint('code', name=op.f('uq_sms_reminders_code'))
    )
    with op.batch_alter_table('sms_reminders', schema=None) as batch_op:
        batch_op.create_index('ix_sms_reminders_number_claimed_at', ['number', 'claimed_at'], unique=False)
        batch_op.create_index('ix_sms_reminders_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('batch_of_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('batch_exempt', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_foreign_key(batch_op.f('fk_ratings_batch_of_id_ratings'), 'ratings', ['batch_of_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ratings_batch_of_id_ratings'), type_='foreignkey')
        batch_op.drop_column('batch_exempt')
        batch_op.drop_column('batch_of_id')

    with op.batch_alter_table('sms_reminders', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_reminders_status_next_attempt_at')
        batch_op.drop_index('ix_sms_reminders_number_claimed_at')

    op.drop_table('sms_reminders')
