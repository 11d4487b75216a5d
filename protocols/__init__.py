"""The three wire protocols Asterisk speaks to us, sans I/O: bytes in, events out, nothing else.

``agi`` (FastAGI, the rating call's script), ``ami`` (the Manager Interface, the dialer's
Originates and events) and ``audiosocket`` (the caller's audio for speech ratings). None
touches a socket or imports the project; the asyncio servers and clients that do live
with their users (``ivr/``, ``callback/``) and the simulators.

All three are driven one way, h11's (``common``): ``receive_data(bytes)``, ``b""`` at the
end of input; ``next_event()`` until the one ``NEED_DATA``; a state enum whose ``ERROR``
state follows a ``RemoteProtocolError``; ``LocalProtocolError`` for our own misuse.
"""
