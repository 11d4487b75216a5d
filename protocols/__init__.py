"""The three wire protocols Asterisk speaks to us, sans I/O: bytes in, events out, nothing else.

``agi`` (FastAGI, the rating call's script), ``ami`` (the Manager Interface, the dialer's
Originates and events) and ``audiosocket`` (the caller's audio for speech ratings). None
touches a socket or imports the project; the asyncio servers and clients that do live
with their users (``ivr/``, ``callback/``) and the simulators.
"""
