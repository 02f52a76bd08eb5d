"""Untrusted text on a terminal and in CSV files: shown, never obeyed.

Data (names from CSV files and program files, addresses, SMTP replies, feed names, CSV headers)
reaches the terminal through ``click.echo`` and Rich. Nothing in it may act:

- Control characters are printed as visible escapes (``\\x1b``): ESC starts the sequences that
  recolour, retitle, hide or rewrite what a terminal shows, a C1 control such as CSI (U+009B)
  does the same in one character, CR and BS overwrite a line, a line break could print a line
  that looks like the tool's own. So are the bidirectional overrides (U+202E…), which reorder
  what is shown.
- Rich markup (``[red]``, ``[/x]``) is not parsed in data: data goes to Rich as ``Text``
  (``cell``), or through ``click.echo``. ``[/x]`` in an address would otherwise end the
  output with a MarkupError, and ``[white on white]`` hide what follows.
- A CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a CR is prefixed with ``'``
  (``csv_cell``, from ``config.cells``, which every export shares): a spreadsheet
  shows it instead of running it as a formula (OWASP, "CSV Injection").

Rich is imported only by ``cell``: ``tickler --help`` and ``plan`` must start fast (``main``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from config.cells import FORMULA_START, csv_cell

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["FORMULA_START", "cell", "csv_cell", "shown", "shown_lines"]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(value: object) -> str:
    """Return ``value`` as text safe to print: controls and bidi overrides as visible escapes."""
    return _UNSAFE.sub(_escape, str(value))


def shown_lines(value: object) -> str:
    """Return text of several lines safe to print: line breaks and tabs kept, the rest shown."""
    return "\n".join(
        "\t".join(shown(part) for part in line.split("\t")) for line in str(value).split("\n")
    )


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def cell(value: object) -> Text:
    """Return ``value`` as a Rich ``Text``: shown as it is, never parsed as markup."""
    from rich.text import Text

    return Text(shown(value))
