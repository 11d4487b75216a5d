"""The database: the SQLAlchemy models, the engine, the migrations, and the small helpers every workflow
writes through (a rating's change history, the per-batch lookups, the journal's positions, values
clamped to their columns).
"""
