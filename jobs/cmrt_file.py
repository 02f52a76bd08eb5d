"""Read an uploaded CMRT workbook into cells, refusing what is not a plain, reasonable .xlsx.

An upload is untrusted: it is opened as a zip first and refused before openpyxl sees it when it
is too big, expands to too much (a zip bomb), or carries macros (``vbaProject.bin``: an .xlsm
renamed .xlsx). openpyxl never runs macros or formulas; it reads the cached values
(``data_only``) of the three sheets the check needs, within a bounded range.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from calendars.cmrt_check import SHEETS, SMELTER_FIRST_ROW, SMELTERS, Cells

MAX_UPLOAD = 5 * 1024 * 1024
MAX_EXPANDED = 50 * 1024 * 1024
MAX_RATIO = 100  # a real workbook compresses 5-20 times
MAX_MEMBERS = 2000
MAX_ROWS = {"Declaration": 120, SMELTERS: SMELTER_FIRST_ROW + 5000, "Checker": 200}
MAX_COLUMNS = 12


@dataclass(frozen=True, slots=True)
class UnreadableFile(Exception):
    """Why an upload was refused, said to the person who sent it."""

    message: str

    def __str__(self) -> str:
        return self.message


def read_cells(data: bytes) -> Cells:
    """Return the cells of the CMRT sheets in ``data``; raise UnreadableFile when refused."""
    if len(data) > MAX_UPLOAD:
        raise UnreadableFile(f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise UnreadableFile("this is not an Excel workbook (.xlsx)") from None
    names = {m.filename for m in members}
    if "[Content_Types].xml" not in names or not any(n.startswith("xl/") for n in names):
        raise UnreadableFile("this is not an Excel workbook (.xlsx)")
    if any(n.lower().endswith("vbaproject.bin") for n in names):
        raise UnreadableFile(
            "the workbook contains macros; save the CMRT as an .xlsx workbook without macros"
        )
    expanded = sum(m.file_size for m in members)
    packed = sum(m.compress_size for m in members) or 1
    if len(members) > MAX_MEMBERS or expanded > MAX_EXPANDED or expanded / packed > MAX_RATIO:
        raise UnreadableFile("the workbook expands to far more than a CMRT; it was not opened")
    return _cells(data)


def _cells(data: bytes) -> Cells:
    # Imported here: openpyxl is heavy and only an upload needs it.
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_vba=False)
    except Exception:  # openpyxl raises many kinds for a damaged file: all mean the same here
        raise UnreadableFile("the workbook could not be read; is it a damaged file?") from None
    try:
        out: dict[str, dict[str, object]] = {}
        for name in SHEETS:
            if name not in book.sheetnames:
                continue
            sheet = book[name]
            cells: dict[str, object] = {}
            for row in sheet.iter_rows(max_row=MAX_ROWS[name], max_col=MAX_COLUMNS):
                for cell in row:
                    value = getattr(cell, "value", None)
                    coordinate = getattr(cell, "coordinate", None)
                    if value is not None and coordinate is not None:
                        cells[coordinate] = value
            out[name] = cells
        return out
    finally:
        book.close()
