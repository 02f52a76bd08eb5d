"""CMRT workbooks for tests, built with openpyxl following the published 6.x structure.

No real template can be downloaded here, so these follow the completion guide's layout (the
cell map of ``calendars.cmrt_check``): a Declaration tab with the title, company information
and questions, a Smelter List tab and a Checker tab. ``workbook()`` gives a complete CMRT;
``blank`` and ``answers`` take cells away or change them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

from openpyxl import Workbook

from calendars.cmrt_check import (
    CHECKER,
    COMPANY_QUESTIONS,
    DECLARATION,
    METALS,
    QUESTIONS,
    SMELTERS,
    answer_cell,
    company_question_cell,
)

COMPANY = {
    "D8": "Acme Components Ltd",
    "D9": "A. Company",
    "D14": "Ana Lopez",
    "D15": "ana.lopez@acme.example",
    "D16": "+1 949 555 0100",
    "D17": "Ben Okafor",
    "D18": "Chief Operating Officer",
    "D19": "ben.okafor@acme.example",
    "D20": "+1 949 555 0101",
    "D21": "2017-01-05",
}
SMELTER_ROWS = (
    ("Tantalum", "Global Advanced Metals Boyertown", "UNITED STATES OF AMERICA", "CID002557"),
    ("Tin", "Thaisarco", "THAILAND", "CID001898"),
    ("Gold", "Metalor Technologies S.A.", "SWITZERLAND", "CID001153"),
    ("Tungsten", "Global Tungsten & Powders Corp.", "UNITED STATES OF AMERICA", "CID000568"),
)


def workbook(
    *,
    version: str = "6.31",
    blank: tuple[str, ...] = (),
    answers: Mapping[str, str] | None = None,
    smelters: tuple[tuple[str, str, str, str], ...] = SMELTER_ROWS,
) -> bytes:
    """Return an .xlsx CMRT, complete unless ``blank`` names Declaration cells to leave empty."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = DECLARATION
    sheet["B2"] = f"Conflict Minerals Reporting Template (CMRT) Version {version}"
    for cell, value in COMPANY.items():
        sheet[cell] = value
    for question in QUESTIONS:
        sheet[f"B{23 + 5 * (question - 1)}"] = f"{question}) question {question}"
        for metal in METALS:
            sheet[f"C{answer_cell(question, metal)[1:]}"] = metal
            sheet[answer_cell(question, metal)] = "Yes"
    for letter in COMPANY_QUESTIONS:
        sheet[company_question_cell(letter)] = "Yes"
    for cell, value in (answers or {}).items():
        sheet[cell] = value
    for cell in blank:
        sheet[cell] = None
    smelter_sheet = book.create_sheet(SMELTERS)
    smelter_sheet.append(
        [
            "Smelter Identification Number Input Column",
            "Metal (*)",
            "Smelter Look-up (*)",
            "Smelter Name (1)",
            "Smelter Country (*)",
            "Smelter Identification",
        ]
    )
    smelter_sheet.insert_rows(1, 3)
    for n, (metal, name, country, cid) in enumerate(smelters):
        row = 5 + n
        smelter_sheet[f"B{row}"] = metal
        smelter_sheet[f"C{row}"] = name
        smelter_sheet[f"D{row}"] = name
        smelter_sheet[f"E{row}"] = country
        smelter_sheet[f"F{row}"] = cid
    book.create_sheet(CHECKER)["A1"] = "Checker"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def with_macros(data: bytes) -> bytes:
    """Return ``data`` with a ``vbaProject.bin`` added, as an .xlsm renamed .xlsx carries."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0 not really VBA")
    return out.getvalue()


def zip_bomb() -> bytes:
    """Return a small zip that claims to be a workbook and expands to 60 MB of zeros."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        dst.writestr("[Content_Types].xml", "<Types/>")
        dst.writestr("xl/worksheets/sheet1.xml", b"\0" * (60 * 1024 * 1024))
    return out.getvalue()
