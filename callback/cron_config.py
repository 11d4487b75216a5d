"""``rq cron callback.cron_config``: the one periodic sweep of the callback loop.

Run exactly one ``rq cron`` per deployment; it has no leader election, and
two would sweep twice (harmless, since jobs are idempotent, but wasteful).
"""

from rq import cron

from callback.jobs import QUEUE_NAME, SWEEP_INTERVAL_SECONDS, sweep_due

cron.register(sweep_due, queue_name=QUEUE_NAME, interval=SWEEP_INTERVAL_SECONDS)
