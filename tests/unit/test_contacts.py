"""A program's named contact (TICKLER_PROGRAM_CONTACTS): a mailbox, checked where it comes in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings


def test_a_named_contact_is_accepted() -> None:
    contact = "Dana Kim, Compliance Officer <dana.kim@example.com>"
    assert Settings(program_contacts={"fcpa": contact}).program_contacts == {"fcpa": contact}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("Dana <dana.kim@example>", "has no dot"),
        ("Dana\nBcc: x <dana.kim@example.com>", "one line of text"),
        ('Dana "K" <dana.kim@example.com>', "without <, > or quotes"),
        ("not an address", "is not an email address"),
    ],
)
def test_a_bad_contact_names_its_program(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=f"contact of 'fcpa': .*{says}"):
        Settings(program_contacts={"fcpa": value})
