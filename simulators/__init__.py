"""Stand-ins for what a hotline centre has and a developer's machine does not: Asterisk's side of FastAGI
and of AMI, callers who rate, an SMS gateway. ``make demo`` and the fast tests run on them; where they and
the real PBX differ, they are wrong (the real-PBX tests say which way). Nothing in ivr/, callback/, web/ or
rating_core/ imports them.
"""
