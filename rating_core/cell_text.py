"""Text from outside written into a spreadsheet as text, never as a formula.

Unit, queue and agent names come from channel variables and the platform's case
records; a value that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or a
carriage return, which some programs skip before looking) is taken by Excel and
WPS as a formula: ``=HYPERLINK(…)`` in a 通报表 is a link a supervisor clicks.
In an xlsx the cell is typed as a string; in a CSV, which has no types, the
value gets a leading apostrophe (OWASP's advice for CSV injection), which
spreadsheets hide and read as "this is text".
"""

from __future__ import annotations

from typing import Any

from openpyxl.cell.cell import Cell

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def looks_like_a_formula(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_FORMULA_STARTS)


def csv_text(value: Any) -> Any:
    """A CSV field: a string that a spreadsheet would run, quoted as text; anything else as it is."""
    return f"'{value}" if looks_like_a_formula(value) else value


def as_text(cell: Cell) -> Cell:
    """Make an openpyxl cell holding a string a string cell, whatever it begins with."""
    if isinstance(cell.value, str):
        cell.data_type = "s"
    return cell
