"""The Prometheus metrics every process counts, defined once so their names and labels cannot drift apart.

Each process (the FastAGI server, the workers, the dialer, the web tool) imports what it moves and serves
the default registry; what is read from the database (tasks by state, deliveries, SMS) is not here but in
the web tool's collector (:mod:`web.metrics`), run on scrape, so one place reads the store for it.

Labels are low-cardinality only: hotline, level, channel, state, outcome, job. Never a number, a uniqueid
or a task id: each label value makes a series Prometheus keeps for weeks.

No multiprocess mode: every count is made in the process that serves it. The store process reports each
batch to the FastAGI server, which counts it; the speech workers' results are timed where they arrive; the
RQ worker counts a job's end in its parent, after the work horse it forked has exited.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Latencies a caller can hear: a few milliseconds when all is well, up to seconds when it is not.
TURN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A store batch or a speech decode: tens of milliseconds to several seconds.
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# -- the FastAGI server (ivr/) ----------------------------------------------------------------------------

AGI_CALLS_IN_PROGRESS = Gauge(
    "hotline_eval_agi_calls_in_progress", "FastAGI connections (calls) being served now.")
AGI_SESSIONS = Counter(
    "hotline_eval_agi_sessions", "FastAGI connections served, by how they ended (ok, failed).", ["outcome"])
RATINGS = Counter(
    "hotline_eval_ratings", "Ratings given in calls and made durable in the journal.",
    ["hotline", "level", "channel"])
AGI_TURN = Histogram(
    "hotline_eval_agi_turn_seconds",
    "The server's turn: from Asterisk's reply to the next command sent on the call (what the caller waits for "
    "between prompts, the journal's fsync included).", buckets=TURN_BUCKETS)
STORE_BATCH = Histogram(
    "hotline_eval_store_batch_seconds", "One batch of the journal applied to the database by the store process.",
    buckets=SLOW_BUCKETS)
STORE_EVENTS = Counter(
    "hotline_eval_store_events_applied", "Journal lines the store process applied to the database.")
STORE_UP = Gauge(
    "hotline_eval_store_available", "1 while the store process can write the database, 0 while it cannot.")
SPOOL_PENDING = Gauge(
    "hotline_eval_spool_pending_events",
    "Journal lines written and not yet applied to the database (lines of the open segment, more when behind).")
JOURNAL_QUEUE = Gauge(
    "hotline_eval_journal_queue_events", "Events handed over by calls and waiting for the journal's disk.")
SPEECH_STREAMS = Gauge(
    "hotline_eval_speech_streams_in_progress", "Audio streams open on the speech recognition workers.")
SPEECH_DECODE = Histogram(
    "hotline_eval_speech_decode_seconds",
    "From the end of a stream's audio to the recogniser's final result.", buckets=SLOW_BUCKETS)

# -- the dialer and the workers (callback/) ---------------------------------------------------------------

DIALER_CHANNELS = Gauge(
    "hotline_eval_dialer_channels_in_use", "Callback calls this dialer has placed and not yet seen end.")
DIALER_OUTCOMES = Counter(
    "hotline_eval_dialer_outcomes", "Callback attempts ended, by outcome (answered, busy, no_answer, …).",
    ["outcome"])
WORKER_JOBS = Counter(
    "hotline_eval_worker_jobs", "RQ jobs this worker ran, by job function and outcome (finished, failed, …).",
    ["job", "outcome"])
