"""Check a supplier's CMRT the way the template's Checker tab does, and name each cell to fix.

The Conflict Minerals Reporting Template (RMI, formerly CFSI) is an Excel workbook. This module
knows the layout of its 6.x versions as the completion guide describes it:

- ``Declaration``: the template version in its title ("... Version 6.31"); company information
  in column D, rows 8-21, the required ones marked (*); questions 1-8, each with one answer row
  per metal (tantalum, tin, gold, tungsten) in column D; company-level questions A-I in column D.
- ``Smelter List``: one smelter per row from row 5: metal (B), smelter look-up (C), smelter
  name (D), country (E), smelter identification (F, a CID such as CID001070).
- ``Checker``: the template's own list of what is missing; it is computed by Excel formulas,
  which are not run here, so this module applies the same rules itself.

The rules, as the Checker applies them: the required company fields; question 1 and 2 for
every metal; questions 3-8 for a metal declared necessary (yes to 1 and 2); questions A-I when
any metal is; at least one smelter for such a metal; and each smelter row with its metal, a
name or look-up, a country and, when given, a well-formed identifier.

Pure: it takes the cells (sheet name -> cell reference -> value) that ``jobs.cmrt_file`` read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

DECLARATION = "Declaration"
SMELTERS = "Smelter List"
CHECKER = "Checker"
SHEETS = (DECLARATION, SMELTERS, CHECKER)
#: The template versions whose layout this module knows.
VERSIONS = ("6.0", "6.01", "6.1", "6.22", "6.31", "6.4", "6.5")
METALS = ("Tantalum", "Tin", "Gold", "Tungsten")
# Company information: (cell, label, required).
COMPANY: tuple[tuple[str, str, bool], ...] = (
    ("D8", "Company name", True),
    ("D9", "Declaration scope", True),
    ("D10", "Description of scope", False),
    ("D14", "Contact name", True),
    ("D15", "Contact email", True),
    ("D16", "Contact phone", True),
    ("D17", "Authorizer", True),
    ("D19", "Authorizer email", True),
    ("D20", "Authorizer phone", True),
    ("D21", "Effective date", True),
)
USER_DEFINED = "user defined"
# Question n's header is on row 23 + 5 (n - 1); its metals' answers on the four rows below.
QUESTIONS = range(1, 9)
COMPANY_QUESTIONS = "ABCDEFGHI"
COMPANY_FIRST_ROW = 65
SMELTER_FIRST_ROW = 5
MAX_SMELTER_ROWS = 5000
_VERSION = re.compile(r"version\s+(\d+\.\d+)", re.IGNORECASE)
_CID = re.compile(r"CID\d{6}")


def answer_cell(question: int, metal: str) -> str:
    """Return the cell of ``metal``'s answer to question 1-8 on the Declaration tab."""
    return f"D{23 + 5 * (question - 1) + 1 + METALS.index(metal)}"


def company_question_cell(letter: str) -> str:
    """Return the cell of the answer to company question A-I."""
    return f"D{COMPANY_FIRST_ROW + COMPANY_QUESTIONS.index(letter)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing to fix, where it is: ``Declaration!D15: Contact email is required``."""

    sheet: str
    cell: str
    message: str

    def __str__(self) -> str:
        return f"{self.sheet}!{self.cell}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    version: str | None
    company: str | None
    problems: tuple[Problem, ...]
    smelters: int

    @property
    def complete(self) -> bool:
        return not self.problems


Cells = Mapping[str, Mapping[str, object]]


def check(cells: Cells) -> Result:
    """Return what the Checker tab would list for a workbook's ``cells`` (nothing: complete)."""
    missing = [s for s in SHEETS if s not in cells]
    if missing:
        return Result(
            version=None,
            company=None,
            problems=tuple(
                Problem(sheet=s, cell="-", message="this sheet is missing: is this a CMRT?")
                for s in missing
            ),
            smelters=0,
        )
    declaration = cells[DECLARATION]
    problems: list[Problem] = []
    version = _version(declaration, problems)
    if version is not None and version not in VERSIONS:
        return Result(
            version=version,
            company=_text(declaration.get("D8")) or None,
            problems=(
                Problem(
                    sheet=DECLARATION,
                    cell="A1",
                    message=f"template version {version} is not one this check knows; "
                    f"please use the current CMRT (versions understood: {', '.join(VERSIONS)})",
                ),
            ),
            smelters=0,
        )
    problems += _company(declaration)
    in_scope = _questions(declaration, problems)
    if in_scope:
        for letter in COMPANY_QUESTIONS:
            cell = company_question_cell(letter)
            if not _text(declaration.get(cell)):
                problems.append(
                    _need(cell, f"Question {letter} is required when 3TG is in your products")
                )
    smelters = _smelters(cells[SMELTERS], in_scope, problems)
    return Result(
        version=version,
        company=_text(declaration.get("D8")) or None,
        problems=tuple(problems),
        smelters=smelters,
    )


def _version(declaration: Mapping[str, object], problems: list[Problem]) -> str | None:
    for ref in sorted(declaration):
        if _row(ref) <= 5:
            match = _VERSION.search(_text(declaration[ref]))
            if match:
                return match.group(1)
    problems.append(
        Problem(sheet=DECLARATION, cell="A1", message="no template version in the title rows")
    )
    return None


def _company(declaration: Mapping[str, object]) -> list[Problem]:
    out = []
    for cell, label, required in COMPANY:
        if required and not _text(declaration.get(cell)):
            out.append(_need(cell, f"{label} is required"))
    scope = _text(declaration.get("D9")).lower()
    if USER_DEFINED in scope and not _text(declaration.get("D10")):
        out.append(_need("D10", "Description of scope is required for a user-defined scope"))
    for cell in ("D15", "D19"):
        value = _text(declaration.get(cell))
        if value and "@" not in value:
            out.append(_need(cell, f"{value!r} is not an email address"))
    return out


def _questions(declaration: Mapping[str, object], problems: list[Problem]) -> list[str]:
    """Check questions 1-8 and return the metals declared necessary (yes to 1 and 2)."""
    in_scope = []
    for metal in METALS:
        q1 = _yes_no(declaration, 1, metal, problems)
        q2 = _yes_no(declaration, 2, metal, problems) if q1 == "yes" else None
        if q1 == "yes" and q2 == "yes":
            in_scope.append(metal)
            for question in QUESTIONS[2:]:
                cell = answer_cell(question, metal)
                if not _text(declaration.get(cell)):
                    problems.append(_need(cell, f"Question {question} ({metal}) is required"))
    return in_scope


def _yes_no(
    declaration: Mapping[str, object], question: int, metal: str, problems: list[Problem]
) -> str | None:
    cell = answer_cell(question, metal)
    value = _text(declaration.get(cell)).lower()
    if value in ("yes", "no"):
        return value
    if value:
        problems.append(_need(cell, f"Question {question} ({metal}) must be Yes or No"))
    else:
        problems.append(_need(cell, f"Question {question} ({metal}) is required"))
    return None


def _smelters(sheet: Mapping[str, object], in_scope: list[str], problems: list[Problem]) -> int:
    rows: dict[int, dict[str, str]] = {}
    for ref, value in sheet.items():
        row = _row(ref)
        text = _text(value)
        if SMELTER_FIRST_ROW <= row < SMELTER_FIRST_ROW + MAX_SMELTER_ROWS and text:
            rows.setdefault(row, {})[ref.rstrip("0123456789")] = text
    listed: set[str] = set()
    for row in sorted(rows):
        got = rows[row]
        if not any(got.get(col) for col in "BCDEF"):
            continue  # a row with only an input-column entry is the template's helper
        metal = got.get("B", "")
        known = {m.lower(): m for m in METALS}
        if metal.lower() not in known:
            problems.append(_smelter(f"B{row}", "Metal must be one of " + ", ".join(METALS)))
        else:
            listed.add(known[metal.lower()])
        if not got.get("C") and not got.get("D"):
            problems.append(_smelter(f"D{row}", "Smelter name (or look-up) is required"))
        if not got.get("E"):
            problems.append(_smelter(f"E{row}", "Smelter country is required"))
        cid = got.get("F", "")
        if cid and not _CID.fullmatch(cid.upper()):
            problems.append(_smelter(f"F{row}", f"{cid!r} is not a smelter identification (CID)"))
    for metal in in_scope:
        if metal not in listed:
            problems.append(
                _smelter(
                    f"B{SMELTER_FIRST_ROW}",
                    f"{metal} is declared in your products: list at least one {metal} smelter",
                )
            )
    return len(rows)


def _need(cell: str, message: str) -> Problem:
    return Problem(sheet=DECLARATION, cell=cell, message=message)


def _smelter(cell: str, message: str) -> Problem:
    return Problem(sheet=SMELTERS, cell=cell, message=message)


def _row(ref: str) -> int:
    digits = ref.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    return int(digits) if digits.isdigit() else 0


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()
