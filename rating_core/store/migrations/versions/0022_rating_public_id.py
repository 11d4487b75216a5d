"""ratings: a public id (UUID4), the rating's name in every outbound profile, independent of the Asterisk uniqueid

Existing ratings get one each, made here in batches.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-10
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None

BATCH = 1000

# Plain ALTER TABLE, not batch mode: on SQLite batch mode copies the table and drops the old one, and the drop
# deletes every row that points at a rating through ON DELETE CASCADE (see 0017).


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == 'sqlite'
    # SQLite cannot make a column NOT NULL once added (only batch mode could), so there it is added NOT NULL
    # with an empty default that the backfill below overwrites on every row; the model makes every new id.
    op.add_column('ratings', sa.Column('public_id', sa.String(length=36), nullable=not sqlite,
                                       server_default='' if sqlite else None))
    ratings = sa.table('ratings', sa.column('id', sa.Integer()), sa.column('public_id', sa.String(36)))
    bind = op.get_bind()
    missing = sa.or_(ratings.c.public_id.is_(None), ratings.c.public_id == '')
    while True:
        ids = bind.execute(sa.select(ratings.c.id).where(missing).order_by(ratings.c.id).limit(BATCH)).scalars().all()
        if not ids:
            break
        bind.execute(ratings.update().where(ratings.c.id == sa.bindparam('rating_id'))
                     .values(public_id=sa.bindparam('new_id')),
                     [{'rating_id': rating_id, 'new_id': str(uuid.uuid4())} for rating_id in ids])
    if not sqlite:
        op.alter_column('ratings', 'public_id', existing_type=sa.String(length=36), nullable=False)
    op.create_index('ix_ratings_public_id', 'ratings', ['public_id'], unique=True)


def downgrade() -> None:
    op.drop_index('ix_ratings_public_id', table_name='ratings')
    op.drop_column('ratings', 'public_id')
