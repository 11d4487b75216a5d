"""The ``<int:…>`` of every route: a record id the database can hold, or no route at all (a 404).

Werkzeug's own converter takes any run of digits, Unicode ones too (``٣`` is 3), and hands ``10**23`` to the
query, where PostgreSQL's ``integer`` refuses it with an error the page cannot explain. Every id column is an
``Integer`` (``rating_core.store.models``): 1 to 2³¹−1 on PostgreSQL, the narrower of the two databases.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

MAX_ID = 2**31 - 1


class RecordId(IntegerConverter):
    """ASCII digits only, at most ten of them, 1 ≤ id ≤ 2³¹−1 unless the rule gives other bounds."""

    regex = r"[0-9]{1,10}"

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)
