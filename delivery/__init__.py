"""What the service sends out once a call is over: each pass a plain function an RQ job runs.

``webhooks`` delivers the outbox to the platforms' endpoints (the records' sync to the
provincial platform); ``sms`` sends the 补充评价 SMS to citizens who hung up unrated. What
to send is decided in :mod:`rating_core`; here is only the sending, its retries and leases.
"""
