"""Program files: the models a compliance officer's TOML files are validated against.

One file per program. ``kind`` picks the model; every model forbids unknown fields so that a
misspelt key is an error rather than a silently ignored setting. Local date-times in a file are
wall-clock times in the program's ``timezone`` (never a fixed offset), so "21:00" in July is
PDT and in January PST.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from config.dates import MAX_OFFSET, Day, Instant
from config.emails import Email

_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"
_OFFSET = re.compile(r"^\s*(\d+)\s*(w|d|h|m)\s*$|^P(?:(\d+)W|(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?$")


Tier = Literal["contract_manufacturer", "direct", "indirect"]
ExcludedRole = Literal["director", "executive_officer"]
FcpaRole = Literal[
    "director", "officer", "employee", "agent", "distributor", "consultant", "jv_partner"
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class WrittenOffset:
    """An offset as it was written: whole days counted on the wall clock, the rest in real time.

    "7d", "2w" and "P7D" are days (7 days before 21:00 is 21:00, whatever DST did); "3h",
    "24h", "1440m", "PT24H" are real time (24 hours before is 24 elapsed hours, so 23:00 or
    01:00 on the wall clock across a DST change), as RFC 5545 separates P1D from PT24H.
    "P1DT2H" is one wall-clock day and two real hours.
    """

    days: int = 0
    real: timedelta = timedelta(0)

    @property
    def total(self) -> timedelta:
        """Return the offset's nominal length (a day as 24 hours), for bounds and ordering."""
        return timedelta(days=self.days) + self.real


def split_offset(text: str) -> WrittenOffset:
    """Parse "7d", "2w", "3h", "30m" or an ISO 8601 duration ("P7D", "PT3H"), keeping its unit."""
    match = _OFFSET.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ValueError(f"{text!r} is not an offset such as '7d', '3h', '30m', 'P7D' or 'PT3H'")
    n, unit, weeks, days, hours, minutes = match.groups()
    # Checked before the timedelta is built: "99999999999d" is beyond what one can hold.
    too_long = ValueError(f"offset {text!r} is longer than {MAX_OFFSET.days} days")
    if any(len(part) > 7 for part in match.groups() if part and part.isdigit()):
        raise too_long
    if n is not None:
        count = int(n)
        offset = {
            "w": WrittenOffset(days=7 * count),
            "d": WrittenOffset(days=count),
            "h": WrittenOffset(real=timedelta(hours=count)),
            "m": WrittenOffset(real=timedelta(minutes=count)),
        }[unit]
    else:
        offset = WrittenOffset(
            days=7 * int(weeks or 0) + int(days or 0),
            real=timedelta(hours=int(hours or 0), minutes=int(minutes or 0)),
        )
    if offset.total > MAX_OFFSET:
        raise too_long
    return offset


def parse_offset(text: str) -> timedelta:
    """Return the nominal length of an offset (see ``split_offset`` for how it is counted)."""
    return split_offset(text).total


Offset = Annotated[str, Field(description="e.g. '7d', '1d', '3h'")]


def _check_offsets(values: list[str]) -> list[str]:
    for value in values:
        if parse_offset(value) <= timedelta(0):
            raise ValueError(f"offset {value!r} must be positive")
    return values


class ProgramBase(Model):
    id: str = Field(pattern=_ID, description="Stable id: lowercase letters, digits and dashes")
    name: str = Field(min_length=1)
    timezone: str = "America/Los_Angeles"
    send_time: time = Field(default=time(9, 0), description="Local time scheduled emails go out")
    extra_closures: list[Day] = Field(
        default_factory=list, description="Closure days missing from the holiday calendars"
    )
    send_calendar: Literal["sec", "nasdaq", "nyse", "weekdays"] = Field(
        default="sec",
        description="Business days scheduled emails go out on ('sec': weekdays that are not "
        "US federal holidays); a send due on another day moves to the next business day",
    )
    send_on_closed_days: bool = Field(
        default=False, description="Send on weekends and holidays too, at the scheduled instant"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --- conflict minerals ---------------------------------------------------------------------


class Wave(Model):
    key: str = Field(pattern=_ID)
    send: Day
    response_due: Day
    tiers: list[Tier] = Field(default_factory=lambda: list(get_args(Tier)), min_length=1)

    @field_validator("response_due")
    @classmethod
    def _after_send(cls, value: date, info: ValidationInfo) -> date:
        send = info.data.get("send")
        if send is not None and value <= send:
            raise ValueError(f"response_due {value} must be after send {send}")
        return value


class FollowUp(Model):
    interval_days: int = Field(default=7, ge=1, le=90)
    max: int = Field(default=3, ge=0, le=20)
    escalate_after_days: int | None = Field(default=7, ge=0, le=90)


class Milestone(Model):
    key: str = Field(pattern=_ID)
    title: str = Field(min_length=1)
    # Bounded: ten years either side is already absurd, and business days are counted one
    # by one (a billion of them would hang the planner).
    offset_days: int | None = Field(
        default=None, ge=-3660, le=3660, description="Calendar days from Form SD due"
    )
    offset_business_days: int | None = Field(
        default=None, ge=-2600, le=2600, description="SEC business days"
    )

    @field_validator("offset_business_days")
    @classmethod
    def _one_offset(cls, value: int | None, info: ValidationInfo) -> int | None:
        if (value is None) == (info.data.get("offset_days") is None):
            raise ValueError("give exactly one of offset_days and offset_business_days")
        return value


_URL = re.compile(r"https?://[^\s<>\"'\x00-\x1f\x7f]{1,2000}")


def _document_url(value: object) -> object:
    # Written into emails as it is: one http(s) URL, nothing that could end a line or a
    # link early (whitespace, quotes, angle brackets, controls); no javascript: or file:.
    if isinstance(value, str) and not _URL.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a link such as https://example.com/policy.pdf "
            "(http or https, no spaces, quotes or angle brackets, at most 2000 characters)"
        )
    return value


#: A document a program's emails link to (the policy text, the CMRT template).
DocumentUrl = Annotated[str, BeforeValidator(_document_url)]


class ConflictMinerals(ProgramBase):
    kind: Literal["conflict_minerals"]
    reporting_year: int = Field(ge=2013, le=2100)
    template_url: DocumentUrl | None = Field(
        default=None, description="Where suppliers download the CMRT template (linked in emails)"
    )
    waves: list[Wave] = Field(min_length=1)
    follow_up: FollowUp = FollowUp()
    incomplete: FollowUp = FollowUp(interval_days=7, max=2, escalate_after_days=None)
    milestones: list[Milestone] = Field(default_factory=list)

    @field_validator("waves")
    @classmethod
    def _unique_waves(cls, waves: list[Wave]) -> list[Wave]:
        _unique([w.key for w in waves], "wave")
        return waves

    @field_validator("milestones")
    @classmethod
    def _unique_milestones(cls, items: list[Milestone]) -> list[Milestone]:
        _unique([m.key for m in items], "milestone")
        return items


# --- option exchange -----------------------------------------------------------------------


class Presentation(Model):
    key: str = Field(pattern=_ID)
    start: Instant
    end: Instant
    location: str = ""
    dial_in: str = ""

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: datetime) -> datetime:
        return _naive(value)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and value <= start:
            raise ValueError(f"end {value} must be after start {start}")
        return value


class Extension(Model):
    cutoff: Instant = Field(description="The new expiration, local time")
    announced: Day

    @field_validator("cutoff")
    @classmethod
    def _local(cls, value: datetime) -> datetime:
        return _naive(value)


class GrantRule(Model):
    months: int = Field(default=6, ge=0, le=120)
    days: int = Field(default=1, ge=0, le=365)
    calendar: Literal["nasdaq", "nyse", "sec", "weekdays"] = "nasdaq"


class ExercisePriceRule(Model):
    rule: Literal["close_on_last_trading_day_before_grant"] = (
        "close_on_last_trading_day_before_grant"
    )
    calendar: Literal["nasdaq", "nyse"] = "nasdaq"


class ExchangeRatio(Model):
    ratio: Decimal = Field(default=Decimal("0.75"), gt=0, le=10)
    rounding: Literal["up", "down", "half_up"] = "up"


class Eligibility(Model):
    min_price: Decimal = Field(ge=0)
    hired_before: Day
    countries: list[str] = Field(default_factory=lambda: ["US"], min_length=1)
    excluded_roles: list[ExcludedRole] = Field(default_factory=lambda: list(get_args(ExcludedRole)))
    lookback_start: Day | None = None
    # Validated even when left out: a window with a start and no end is no window.
    lookback_end: Day | None = Field(default=None, validate_default=True)

    @field_validator("lookback_end")
    @classmethod
    def _window(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("lookback_start")
        if (start is None) != (value is None) and "lookback_start" in info.data:
            raise ValueError("give both lookback_start and lookback_end, or neither")
        if start is not None and value is not None and value < start:
            raise ValueError(f"lookback_end {value} is before lookback_start {start}")
        return value


class VestingStepModel(Model):
    period_months: int = Field(ge=1, le=120)
    occurrences: int = Field(ge=1, le=240)
    portion: str = Field(description="Fraction of the grant per occurrence, e.g. '1/48'")

    @field_validator("portion")
    @classmethod
    def _fraction(cls, value: str) -> str:
        try:
            portion = Fraction(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"portion {value!r} is not a fraction such as '1/48'") from None
        if not 0 < portion <= 1:
            raise ValueError(f"portion {value!r} must be above 0 and at most 1")
        return value


class Vesting(Model):
    allocation: Literal[
        "CUMULATIVE_ROUNDING",
        "CUMULATIVE_ROUND_DOWN",
        "FRONT_LOADED",
        "BACK_LOADED",
        "FRONT_LOADED_TO_SINGLE_TRANCHE",
        "BACK_LOADED_TO_SINGLE_TRANCHE",
        "FRACTIONAL",
    ] = "CUMULATIVE_ROUNDING"
    day_of_month: str = "VESTING_START_DAY_OR_LAST_DAY_OF_MONTH"
    steps: list[VestingStepModel] = Field(min_length=1)

    @field_validator("day_of_month")
    @classmethod
    def _day(cls, value: str) -> str:
        named = {
            "29_OR_LAST_DAY_OF_MONTH",
            "30_OR_LAST_DAY_OF_MONTH",
            "31_OR_LAST_DAY_OF_MONTH",
            "VESTING_START_DAY_OR_LAST_DAY_OF_MONTH",
        }
        if value in named or (value.isdigit() and len(value) == 2 and 1 <= int(value) <= 28):
            return value
        raise ValueError(f"day_of_month {value!r}: use '01'..'28' or one of {sorted(named)}")

    @field_validator("steps")
    @classmethod
    def _add_up(cls, steps: list[VestingStepModel]) -> list[VestingStepModel]:
        total = sum((Fraction(s.portion) * s.occurrences for s in steps), Fraction(0))
        if total != 1:
            raise ValueError(f"vesting portions add up to {total}, not 1")
        return steps


class OptionExchange(ProgramBase):
    kind: Literal["option_exchange"]
    open: Day
    cutoff: Instant = Field(description="Election cutoff, local date-time in `timezone`")
    extensions: list[Extension] = Field(default_factory=list)
    cutoff_reminders: list[Offset] = Field(default_factory=lambda: ["7d", "1d", "3h"])
    presentations: list[Presentation] = Field(default_factory=list)
    promise_business_days_after: int = Field(default=1, ge=0, le=30)
    grant: GrantRule = GrantRule()
    exercise_price: ExercisePriceRule = ExercisePriceRule()
    exchange: ExchangeRatio = ExchangeRatio()
    eligibility: Eligibility
    vesting: Vesting
    option_term_years: int = Field(default=10, ge=1, le=30)
    example_shares: int | None = Field(
        default=None, ge=1, description="Shares of an example grant whose vesting `plan` shows"
    )

    @field_validator("cutoff")
    @classmethod
    def _cutoff_after_open(cls, value: datetime, info: ValidationInfo) -> datetime:
        value = _naive(value)
        opened = info.data.get("open")
        if opened is not None and value.date() < opened:
            raise ValueError(f"cutoff {value} is before the open date {opened}")
        return value

    @field_validator("extensions")
    @classmethod
    def _extensions_later(cls, items: list[Extension], info: ValidationInfo) -> list[Extension]:
        previous = info.data.get("cutoff")
        for item in items:
            if previous is not None and item.cutoff <= previous:
                raise ValueError(f"extension cutoff {item.cutoff} must be after {previous}")
            previous = item.cutoff
        return items

    @field_validator("cutoff_reminders")
    @classmethod
    def _offsets(cls, values: list[str]) -> list[str]:
        return _check_offsets(values)

    @field_validator("presentations")
    @classmethod
    def _unique_presentations(cls, items: list[Presentation]) -> list[Presentation]:
        _unique([p.key for p in items], "presentation")
        return items

    @property
    def expiration(self) -> datetime:
        """The effective election cutoff, local and naive: the last extension's, if any."""
        return self.extensions[-1].cutoff if self.extensions else self.cutoff


# --- FCPA acknowledgments -------------------------------------------------------------------


class Renewal(Model):
    mode: Literal["anniversary", "fixed"] = "anniversary"
    month_day: str | None = Field(default=None, description="'MM-DD' when mode is 'fixed'")

    @field_validator("month_day")
    @classmethod
    def _month_day(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("mode") == "fixed" and value is None:
            raise ValueError("a fixed renewal needs month_day, e.g. '03-31'")
        if value is not None:
            try:
                date.fromisoformat(f"2001-{value}")  # a common year: 02-29 is refused
            except ValueError:
                raise ValueError(f"month_day {value!r} is not a valid 'MM-DD'") from None
        return value


class Fcpa(ProgramBase):
    kind: Literal["fcpa"]
    policy_version: str = Field(min_length=1)
    policy_url: DocumentUrl | None = Field(
        default=None, description="The policy's text (linked in emails and on the page)"
    )
    effective: Day
    onboarding_due_days: int = Field(default=30, ge=0, le=365)
    renewal: Renewal = Renewal()
    reminders_before: list[Offset] = Field(default_factory=lambda: ["14d", "3d"])
    overdue: FollowUp = FollowUp(interval_days=7, max=4, escalate_after_days=0)
    compliance_officer: Email | None = Field(
        default=None, description="Escalation address; default: the settings' compliance officer"
    )
    roles: list[FcpaRole] = Field(default_factory=lambda: list(get_args(FcpaRole)))

    @field_validator("reminders_before")
    @classmethod
    def _offsets(cls, values: list[str]) -> list[str]:
        return _check_offsets(values)


Program = ConflictMinerals | OptionExchange | Fcpa
MODELS: dict[str, type[ConflictMinerals] | type[OptionExchange] | type[Fcpa]] = {
    "conflict_minerals": ConflictMinerals,
    "option_exchange": OptionExchange,
    "fcpa": Fcpa,
}


def _naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        raise ValueError(
            f"{value.isoformat()} has a UTC offset: write local time without one; "
            "the program's timezone decides the offset"
        )
    return value


def _unique(keys: list[str], what: str) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{what} key {key!r} appears twice")
        seen.add(key)


def validate_program(data: dict[str, Any]) -> Program:
    """Validate one parsed program file; raises ValueError or pydantic's ValidationError."""
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in MODELS:  # `kind = []` is no kind (nor hashable)
        raise ValueError(f"kind must be one of {sorted(MODELS)}, not {kind!r}")
    return MODELS[kind].model_validate(data)
