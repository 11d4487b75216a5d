"""What the IVR tells the store, as plain events, and the journal they are written to before the caller
hears the next prompt (with the dead letters the store refused). No database here either: the IVR
imports this much and no more to keep a rating.
"""
