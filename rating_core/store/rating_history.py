"""Changing a rating always leaves its trace: which fields moved, from what to what, and who moved them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rating_core.store.models import Rating, RatingChange


def change_rating(rating: Rating, at: datetime, source: str, **values: Any) -> bool:
    """Set ``values`` on ``rating`` and record the change; False if nothing actually changed."""
    moved = {name: [getattr(rating, name), value] for name, value in values.items() if getattr(rating, name) != value}
    if not moved:
        return False
    for name, (_old, new) in moved.items():
        setattr(rating, name, new)
    rating.updated_at = at
    rating.changes.append(RatingChange(changed_at=at, source=source, changes=moved))
    return True
