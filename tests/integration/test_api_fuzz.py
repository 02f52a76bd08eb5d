"""The JSON API fuzzed from its own OpenAPI schema with schemathesis, over a real socket.

Bodies valid by the schema (mostly naming programs and people that do not exist) and bodies
that break it: no answer may be a 5xx, every answer must be one the schema documents, and a
refused call must leave the database exactly as it was. Bounded (a few hundred calls, derandomized
so a failure reproduces) to stay well under a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from jobs.storage.db import EventLog, FeedToken, OptionGrant, Person
from scheduler.daemon.service import Service
from scheduler.web.api import openapi
from scheduler.web.http import create_app
from tests.world import HR_TOKEN, OPEN_WEEK, FakeClock, live_server, seeded, service

SCHEMA = schemathesis.openapi.from_dict(openapi())
EXAMPLES = 150  # per generation mode, over all seven operations
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def state(svc: Service) -> list[Any]:
    """Every row a call could add or change."""
    with svc.factory() as session:
        return [
            [tuple(row) for row in session.execute(select(table.__table__))]
            for table in (EventLog, Person, OptionGrant, FeedToken)
        ]


@pytest.mark.parametrize(
    "mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"]
)
def test_fuzzed_calls_never_fail_and_refusals_change_nothing(
    db_url: str, tmp_path: Path, mode: GenerationMode
) -> None:
    svc = seeded(service(db_url, tmp_path))
    statuses: dict[int, int] = {}
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    headers = {"Authorization": f"Bearer {HR_TOKEN.partition(':')[2]}"}
    try:
        with (
            live_server(create_app(svc, clock=FakeClock(OPEN_WEEK))) as server,
            requests.Session() as session,
        ):

            @given(case=SCHEMA.as_strategy(mode, headers=headers))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: Case[Any]) -> None:
                before = state(svc)
                response = case.call(base_url=server.url, session=session)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                case.validate_response(response, checks=checks)
                if response.status_code >= 400:
                    assert state(svc) == before, response.text

            call()
    finally:
        svc.engine.dispose()
    assert all(status < 500 for status in statuses)
    assert 422 in statuses  # the fuzzer did reach the validation (not only the auth)
    if mode == GenerationMode.POSITIVE:
        assert 201 in statuses  # and some calls were accepted (new hires)
    print(f"\n{mode.value}: statuses {dict(sorted(statuses.items()))}")
