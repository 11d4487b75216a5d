"""webhook endpoints choose a profile; deliveries may be held (with reasons) and remember what they sent

Existing endpoints keep the native body they have always had.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

# Plain ALTER TABLE, not batch mode (see 0022).


def upgrade() -> None:
    op.add_column('webhook_endpoints', sa.Column('profile', sa.String(length=1024), nullable=False,
                                                 server_default='native'))
    # Why a delivery is held: the profile's refusal or its schema's findings, one per line.
    op.add_column('webhook_deliveries', sa.Column('held_reasons', sa.Text(), nullable=True))
    # SHA-256 of the body sent, so an event whose body would repeat the last one sent is not sent again.
    op.add_column('webhook_deliveries', sa.Column('body_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column('webhook_deliveries', 'body_digest')
    op.drop_column('webhook_deliveries', 'held_reasons')
    op.drop_column('webhook_endpoints', 'profile')
