"""``hotline-eval cron`` (or ``rq cron callback.cron_config``): the callback loop's sweep, webhook delivery,
default ratings, SMS reminders, voice message transcripts, and the retention pass.

Run exactly one per deployment; it has no leader election, and
two would sweep twice (harmless, since jobs are idempotent, but wasteful).
"""

from rq import cron

from callback.jobs import (
    QUEUE_NAME,
    SWEEP_INTERVAL_SECONDS,
    TRANSCRIPT_QUEUE_NAME,
    default_unrated_calls,
    deliver_webhooks,
    purge_expired,
    send_sms_reminders,
    sweep_due,
    transcribe_voice_messages,
)
from speech_models.voice_transcripts import BUDGET_SECONDS

# Webhooks go out within seconds of the change; a pass with nothing to do is two small queries.
WEBHOOK_INTERVAL_SECONDS = 10

cron.register(sweep_due, queue_name=QUEUE_NAME, interval=SWEEP_INTERVAL_SECONDS)
cron.register(deliver_webhooks, queue_name=QUEUE_NAME, interval=WEBHOOK_INTERVAL_SECONDS)
# Default ratings are dated when each call's period ended, so an hourly pass is exact enough.
cron.register(default_unrated_calls, queue_name=QUEUE_NAME, interval=3600)
# 补充评价 SMS: due ten minutes after an unrated call, so a minute's lateness does not matter.
cron.register(send_sms_reminders, queue_name=QUEUE_NAME, interval=60)
# Voice message transcripts: a pass claims messages for BUDGET_SECONDS, and its last one may take as long again.
cron.register(transcribe_voice_messages, queue_name=TRANSCRIPT_QUEUE_NAME, interval=60,
              job_timeout=int(3 * BUDGET_SECONDS))
# Retention periods are months and years: once a day is exact enough, and a missed day is caught up the next.
# At 02:30 Beijing time (rq cron reads the expression in UTC), when no one is listening to recordings.
cron.register(purge_expired, queue_name=QUEUE_NAME, cron="30 18 * * *", job_timeout=3600)
