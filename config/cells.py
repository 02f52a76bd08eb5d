"""Spreadsheet cells written from data: shown, never run as formulas.

A CSV or XLSX cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
taken for a formula by spreadsheets (OWASP, "CSV Injection"); every export of the project (the
CLI's CSV output, the evidence export, the dashboard's downloads) prefixes such a cell with
``'``. One rule, here at the bottom of the house, so that the CLI uses it without loading the
jobs.
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """Return ``value`` with a leading ``'`` if a spreadsheet would take it for a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
