"""The plausible range of a date: what every date entering Tickler is checked against.

HR exports write 9999-12-31 for "no end date"; typing errors give years such as 20017. Neither
is a compliance date, and the rules would compute past the end of Python's calendar from them
(a renewal a year after 9999-12-31, a grant six months after a cutoff in 9999). So every date a
program file, a CSV or an API call carries is refused outside ``EARLIEST`` .. ``LATEST``, where
it enters, with a message naming the value: the rules then always have centuries of room
(the longest span a program file allows, a vesting schedule, is bounded well inside it).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, TypeVar

from pydantic import AfterValidator

EARLIEST, LATEST = date(1900, 1, 1), date(2200, 12, 31)
# The longest offset a program file may give (a reminder before a cutoff, a milestone before a
# filing): far beyond any real one, and small enough that no arithmetic on it can overflow.
MAX_OFFSET = timedelta(days=3660)

D = TypeVar("D", bound=date)


def plausible(day: D) -> D:
    """Return ``day`` (a date or a date-time) when it lies in the plausible range; else
    raise ``ValueError`` saying so."""
    only = day.date() if isinstance(day, datetime) else day
    if not EARLIEST <= only <= LATEST:
        hint = ""
        if only.year == 9999:  # what exports write for "no end date"
            hint = f"; {only} stands for 'no date' in some exports: leave the value out instead"
        raise ValueError(f"{day.isoformat()} is not between {EARLIEST} and {LATEST}{hint}")
    return day


#: A date field of a model (program files, CSV rows), range-checked.
Day = Annotated[date, AfterValidator(plausible)]
#: A date-time field of a model, its day range-checked.
Instant = Annotated[datetime, AfterValidator(plausible)]
