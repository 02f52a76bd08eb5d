"""The CMRT check: complete and incomplete workbooks, and the uploads that are refused."""

from __future__ import annotations

from typing import Any

import pytest

from calendars.cmrt_check import check
from jobs.cmrt_file import UnreadableFile, read_cells
from tests.cmrt_workbooks import SMELTER_ROWS, with_macros, workbook, zip_bomb


def problems(data: bytes) -> list[str]:
    return [str(p) for p in check(read_cells(data)).problems]


def test_a_complete_cmrt_has_no_problem() -> None:
    result = check(read_cells(workbook()))
    assert result.complete, result.problems
    assert (result.version, result.company, result.smelters) == ("6.31", "Acme Components Ltd", 4)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"blank": ("D15",)}, ["Declaration!D15: Contact email is required"]),
        (
            {"blank": ("D8", "D21")},
            [
                "Declaration!D8: Company name is required",
                "Declaration!D21: Effective date is required",
            ],
        ),
        ({"blank": ("D24",)}, ["Declaration!D24: Question 1 (Tantalum) is required"]),
        ({"answers": {"D26": "Maybe"}}, ["Declaration!D26: Question 1 (Gold) must be Yes or No"]),
        ({"blank": ("D51",)}, ["Declaration!D51: Question 6 (Gold) is required"]),
        (
            {"blank": ("D67",)},
            ["Declaration!D67: Question C is required when 3TG is in your products"],
        ),
        (
            {"answers": {"D9": "C. User defined"}},
            ["Declaration!D10: Description of scope is required for a user-defined scope"],
        ),
        (
            {"smelters": (("Tin", "Thaisarco", "THAILAND", "CID001898"),)},
            [
                f"Smelter List!B5: {m} is declared in your products: list at least one {m} smelter"
                for m in ("Tantalum", "Gold", "Tungsten")
            ],
        ),
        (
            {
                "smelters": (
                    ("Tin", "Thaisarco", "", "X1"),
                    ("Tantalum", "", "", "CID002557"),
                    ("Gold", "Metalor", "SWITZERLAND", "CID001153"),
                    ("Tungsten", "GTP", "USA", "CID000568"),
                )
            },
            [
                "Smelter List!E5: Smelter country is required",
                "Smelter List!F5: 'X1' is not a smelter identification (CID)",
                "Smelter List!D6: Smelter name (or look-up) is required",
                "Smelter List!E6: Smelter country is required",
            ],
        ),
        (
            {"version": "5.12"},
            [
                "Declaration!A1: template version 5.12 is not one this check "
                "knows; please use the current CMRT (versions understood: 6.0, "
                "6.01, 6.1, 6.22, 6.31, 6.4, 6.5)"
            ],
        ),
    ],
)
def test_each_missing_answer_is_named_by_its_cell(
    change: dict[str, Any], expected: list[str]
) -> None:
    assert problems(workbook(**change)) == expected


def test_a_metal_not_in_the_products_needs_no_more_answers() -> None:
    # No tantalum (question 1 = No): its questions 2-8 and its smelters are not asked for.
    data = workbook(
        answers={"D24": "No"},
        blank=tuple(f"D{r}" for r in (29, 34, 39, 44, 49, 54, 59)),
        smelters=tuple(s for s in SMELTER_ROWS if s[0] != "Tantalum"),
    )
    assert problems(data) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an Excel workbook"),
        (b"%PDF-1.4 not a workbook", "not an Excel workbook"),
        (b"x" * (5 * 1024 * 1024 + 1), "larger than 5 MB"),
        (with_macros(workbook()), "contains macros"),
        (zip_bomb(), "expands to far more"),
    ],
)
def test_unreadable_uploads_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(UnreadableFile, match=message):
        read_cells(data)
