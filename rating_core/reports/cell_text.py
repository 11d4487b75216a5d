"""Text from outside written into a spreadsheet or a document as text, never as a formula or a broken file.

Unit, queue and agent names come from channel variables and the platform's case
records; a value that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or a
carriage return, which some programs skip before looking) is taken by Excel and
WPS as a formula: ``=HYPERLINK(…)`` in a 通报表 is a link a supervisor clicks.
LibreOffice's CSV import can trim leading spaces before it evaluates, so a value
whose first character after white space is one of these counts too.
:func:`looks_like_a_formula` is the one test every writer asks. In an xlsx the
cell is typed as a string and marked quote-prefixed (:func:`as_text`), so that
it stays text even when someone edits it in Excel; in a CSV, which has no types,
the value gets a leading apostrophe (:func:`csv_text`, OWASP's advice for CSV
injection), which spreadsheets hide and read as "this is text".

A control character (a vertical tab pasted from another program, a byte a
channel variable carried) has no place in XML, so openpyxl and python-docx
refuse the whole file for it: it is dropped. The same text may name a file
for download, where path separators and quotes must not pass either.
"""

from __future__ import annotations

import re
from typing import Any

from openpyxl.cell.cell import Cell

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# What a spreadsheet's import may trim before it looks at the first character.
_LEADING_SPACE = " \t\r\n\u3000"
# What XML 1.0 cannot hold: the C0 controls but tab, newline and carriage return.
_NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# What no file system or mail client takes in a file's name.
_NOT_IN_FILE_NAMES = re.compile(r'[\x00-\x1f\x7f\\/:*?"<>|]')


def looks_like_a_formula(value: Any) -> bool:
    """Whether a spreadsheet could take ``value`` for a formula: a string starting, after any white space, with
    ``=``, ``+``, ``-`` or ``@``, or starting with a tab or a carriage return."""
    return isinstance(value, str) and (value.startswith(_FORMULA_STARTS)
                                       or value.lstrip(_LEADING_SPACE).startswith(_FORMULA_STARTS))


def csv_text(value: Any) -> Any:
    """A CSV field: a string that a spreadsheet would run, quoted as text; anything else as it is."""
    return f"'{value}" if looks_like_a_formula(value) else value


def as_text(cell: Cell) -> Cell:
    """Make an openpyxl cell holding a string a string cell, whatever it begins with.

    openpyxl types a string starting with ``=`` as a formula, so the type is set back to string; one that
    looks like a formula is also quote-prefixed, Excel's mark for "typed as text", which keeps it text
    when a supervisor edits the cell and presses Enter.
    """
    if isinstance(cell.value, str):
        cell.data_type = "s"
        if looks_like_a_formula(cell.value):
            cell.quotePrefix = True
    return cell


def printable(value: Any) -> Any:
    """A string without the control characters an xlsx or docx cannot hold; anything else as it is."""
    return _NOT_IN_XML.sub("", value) if isinstance(value, str) else value


def file_name(name: str) -> str:
    """``name`` with what a file system or a Content-Disposition would misread (``/``, quotes, controls) as ``_``."""
    return _NOT_IN_FILE_NAMES.sub("_", name).strip()
