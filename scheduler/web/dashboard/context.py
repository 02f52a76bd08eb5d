"""What every dashboard handler may use: the service, the clock, the sign-in state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from starlette.requests import Request

from config.programs import Program
from scheduler.daemon.service import Service
from scheduler.web.auth import Auth

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dashboard:
    """Built once per app; the dashboard's middleware puts it in every request's scope."""

    service: Service
    clock: Clock
    auth: Auth
    programs: dict[str, Program]

    @property
    def by_name(self) -> list[Program]:
        """The programs as pages list them: by their name."""
        return sorted(self.programs.values(), key=lambda p: p.name)


def dashboard_of(request: Request) -> Dashboard:
    found = request.scope.get("tickler.dashboard")
    if not isinstance(found, Dashboard):
        raise RuntimeError("not a dashboard request")
    return found
