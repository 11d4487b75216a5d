"""The rating store (SQLAlchemy models, migrations, call events) and the rating rules."""
