"""``/dashboard/``: every program with its next deadline, its funnel and its response curve.

The chart is an SVG built by a template (``chart.svg``) from the points ``chart`` computes,
not by a charting library: pygal, the maintained server-side SVG library, writes inline
``<style>`` and ``<script>`` (its tooltips) that the dashboard's CSP forbids, and a cumulative
line against a due date is a polyline and three labels.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from config.programs import Program
from jobs.storage import dashboard as stored
from scheduler.web.auth import Role, require
from scheduler.web.dashboard.context import dashboard_of
from scheduler.web.dashboard.pages import render

# The chart's own units: small enough that its 11-unit labels stay legible when the card
# scales it down to a phone's width.
WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 360, 150, 30, 18, 8


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    """An SVG line of answers so far against the due date, in the chart's own pixels."""

    points: str  # the polyline's "x,y x,y …"
    due_x: float | None
    now_x: float | None
    total: int
    answered: int
    first: str  # axis labels: the first and last day shown
    last: str
    due_label: str
    due_left: bool  # the due line is in the right half: its label goes to its left
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM
    top: int = PAD_TOP


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    program: Program
    funnel: stored.Funnel
    next_due: str
    rate: str
    chart: Chart | None


def chart(curve: stored.Curve, asked: int, now: datetime, zone: ZoneInfo) -> Chart | None:
    """Return the chart of ``curve`` (None when nobody has answered yet).

    Days are UTC days of the first answers; the due line is the program's earliest due date,
    labelled in the program's zone. The y axis runs to everyone asked, so the line's height
    is the response rate.
    """
    if not curve.per_day:
        return None
    first = curve.per_day[0][0] - timedelta(days=1)
    due_day = curve.due.date() if curve.due else None
    today = now.date()
    last = max(d for d in (curve.per_day[-1][0], due_day, min(today, _later(curve, due_day))) if d)
    span = max((last - first).days, 1)
    top = max(asked, sum(n for _, n in curve.per_day), 1)
    inner_w, inner_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP

    def x(day: date) -> float:
        return round(PAD_LEFT + inner_w * (day - first).days / span, 1)

    def y(count: int) -> float:
        return round(HEIGHT - PAD_BOTTOM - inner_h * count / top, 1)

    points, total = [f"{x(first)},{y(0)}"], 0
    for day, count in curve.per_day:
        points.append(f"{x(day)},{y(total)}")
        total += count
        points.append(f"{x(day)},{y(total)}")
    points.append(f"{x(last)},{y(total)}")
    due_x = x(due_day) if due_day and first <= due_day <= last else None
    return Chart(
        points=" ".join(points),
        due_x=due_x,
        due_left=due_x is not None and due_x > WIDTH / 2,
        now_x=x(today) if first <= today <= last else None,
        total=top,
        answered=total,
        first=first.isoformat(),
        last=last.isoformat(),
        due_label=(
            f"due {curve.due.astimezone(zone):%Y-%m-%d %H:%M %Z}" if curve.due is not None else ""
        ),
    )


def _later(curve: stored.Curve, due_day: date | None) -> date:
    # Past the last answer and the due date, a few weeks of flat line say "nothing since".
    anchor = max(d for d in (curve.per_day[-1][0], due_day) if d)
    return anchor + timedelta(days=21)


def when(value: datetime | None, zone: ZoneInfo) -> str:
    """Say an instant in the program's zone, the zone named."""
    if value is None:
        return ""
    return f"{value.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def cards(
    programs: list[Program],
    funnels: dict[str, stored.Funnel],
    curves: dict[str, stored.Curve],
    now: datetime,
) -> list[Card]:
    """Assemble the overview: one card per program, by name."""
    out = []
    for program in sorted(programs, key=lambda p: p.name):
        funnel = funnels.get(program.id) or stored.Funnel(
            program=program.id, asked=0, answered=0, overdue=0, escalated=0, next_due=None
        )
        rate = funnel.rate
        curve = curves.get(program.id)
        out.append(
            Card(
                program=program,
                funnel=funnel,
                next_due=when(funnel.next_due, program.zone) or "nothing open",
                rate=f"{rate:.0%}" if rate is not None else "–",
                chart=chart(curve, funnel.asked, now, program.zone) if curve else None,
            )
        )
    return out


async def overview(request: Request) -> Response:
    await require(request, Role.VIEWER)
    context = dashboard_of(request)
    now = context.clock()
    programs = list(context.programs.values())

    def load() -> tuple[dict[str, stored.Funnel], dict[str, stored.Curve]]:
        with context.service.factory() as session:
            return stored.funnels(session, now), {
                p.id: stored.curve(session, p.id) for p in programs
            }

    funnels, curves = await asyncio.to_thread(load)
    return render(
        request,
        "overview.html",
        active="overview",
        title="Overview",
        cards=cards(programs, funnels, curves, now),
        now=now,
    )


def routes() -> list[Route]:
    return [Route("/", overview, methods=["GET"])]
