"""rectifications: what was done about a verified 差评, by whom and when, as a record of its own

Until now the text an agent typed when a 限期整改 was done lived only in a task
event's detail, and for 立行立改 / 解释说明 only in the verdict note. Existing
tasks get their records from those events where the text is still known: a
``rectification_reported`` event carries its note; a ``verified`` event of
立行立改 / 解释说明 is given the task's verdict note when it is the verdict the
task still holds (an earlier verdict's note was overwritten and is not
invented here). A task with no such event simply has no record; the 报告单
still builds without one.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

import rating_core.store.models

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

# Only the columns the data step reads or writes, as they stand at this revision.
_tasks = sa.table('callback_tasks', sa.column('id', sa.Integer()), sa.column('verdict', sa.String()),
                  sa.column('verdict_note', sa.Text()))
_events = sa.table('callback_task_events', sa.column('id', sa.Integer()), sa.column('task_id', sa.Integer()),
                   sa.column('at', rating_core.store.models.UtcDateTime(timezone=True)), sa.column('actor', sa.String()),
                   sa.column('kind', sa.String()), sa.column('detail', sa.JSON()))
_rectifications = sa.table('rectifications', sa.column('task_id', sa.Integer()), sa.column('kind', sa.String()),
                           sa.column('what', sa.Text()), sa.column('actor', sa.String()),
                           sa.column('actor_name', sa.String()),
                           sa.column('at', rating_core.store.models.UtcDateTime(timezone=True)),
                           sa.column('late', sa.Boolean()))


def upgrade() -> None:
    op.create_table('rectifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('task_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('what', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('actor_name', sa.String(length=64), nullable=True),
    sa.Column('at', rating_core.store.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('late', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['callback_tasks.id'], name=op.f('fk_rectifications_task_id_callback_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rectifications'))
    )
    with op.batch_alter_table('rectifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rectifications_task_id'), ['task_id'], unique=False)

    _records_from_events(op.get_bind())


def _records_from_events(connection: sa.Connection) -> None:
    """One record per past rectification whose text the events (or the verdict note) still hold."""
    verdicts = {row.id: (row.verdict, row.verdict_note) for row in connection.execute(sa.select(_tasks))}
    events = connection.execute(
        sa.select(_events).where(_events.c.kind.in_(('verified', 'rectification_reported')))
        .order_by(_events.c.task_id, _events.c.id)
    ).all()
    last_verified = {event.task_id: event.id for event in events if event.kind == 'verified'}
    rows = []
    for event in events:
        detail = event.detail if isinstance(event.detail, dict) else {}
        if event.kind == 'rectification_reported':
            what, kind, late = str(detail.get('note') or '').strip(), 'deadline_fix', bool(detail.get('late'))
        else:
            verdict, note = verdicts.get(event.task_id, (None, None))
            if (detail.get('verdict') not in ('immediate_fix', 'explained') or event.id != last_verified[event.task_id]
                    or detail.get('verdict') != verdict):
                continue
            what, kind, late = (note or '').strip(), verdict, False
        if what:
            rows.append({'task_id': event.task_id, 'kind': kind, 'what': what, 'actor': event.actor,
                         'actor_name': None, 'at': event.at, 'late': late})
    if rows:
        connection.execute(sa.insert(_rectifications), rows)


def downgrade() -> None:
    with op.batch_alter_table('rectifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rectifications_task_id'))

    op.drop_table('rectifications')
