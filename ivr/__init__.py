"""The IVR side: Asterisk sends callers here over FastAGI (or plain AGI) to rate the call."""
