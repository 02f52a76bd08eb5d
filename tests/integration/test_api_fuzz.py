"""The JSON API fuzzed from its own OpenAPI schema with schemathesis, over a real socket.

Bodies valid by the schema (mostly naming programs and people that do not exist) and bodies
that break it: no answer may be a 5xx, every answer must be one the schema documents, and a
refused call must leave the database exactly as it was. Bounded (a few hundred calls, derandomized
so a failure reproduces) to stay well under a minute. Then schemathesis's coverage phase: the
boundary values of every field, a call without the token, and every method an operation does
not take (405 with ``Allow``); each error must be problem+json valid against the document.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from jsonschema_rs import Draft202012Validator
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from sqlalchemy import select

from jobs.storage.db import EventLog, FeedToken, OptionGrant, Person, upgrade
from scheduler.daemon.service import Service
from scheduler.web.api import openapi
from scheduler.web.http import create_app
from tests.world import HR_TOKEN, OPEN_WEEK, FakeClock, live_server, seeded, service

DOCUMENT = openapi()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
PROBLEM = Draft202012Validator({"$ref": "#/components/schemas/Problem", **DOCUMENT})
AUTH = {"Authorization": f"Bearer {HR_TOKEN.partition(':')[2]}"}
# The token may record every kind of fact, read, and act on messages: every operation is reached.
SCOPES = {"hr": ["*", "read", "messages"], "portal": "*", "kiosk": ["election", "withdrawal"]}
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
    svc = seeded(service(db_url, tmp_path, api_scopes=SCOPES))
    statuses: dict[int, int] = {}
    checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])
    headers = AUTH
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
                    content_type = response.headers["content-type"][0]
                    assert_problem(response.status_code, content_type, response.json())
                    assert state(svc) == before, response.text

            call()
    finally:
        svc.engine.dispose()
    assert all(status < 500 for status in statuses)
    assert 422 in statuses  # the fuzzer did reach the validation (not only the auth)
    if mode == GenerationMode.POSITIVE:
        assert 201 in statuses  # and some calls were accepted (new hires)
    print(f"\n{mode.value}: statuses {dict(sorted(statuses.items()))}")


def assert_problem(status: int, content_type: str, body: Any) -> None:
    """Check an error is RFC 9457 problem+json valid against the document's Problem schema."""
    assert content_type == "application/problem+json", body
    assert not [str(e) for e in PROBLEM.iter_errors(body)], body
    assert body["status"] == status


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for every operation's coverage cases (SQLite: these check the HTTP layer)."""
    tmp = tmp_path_factory.mktemp("coverage")
    url = f"sqlite:///{tmp / 'tickler.db'}"
    upgrade(url)
    svc = seeded(service(url, tmp, api_scopes=SCOPES))
    try:
        with live_server(create_app(svc, clock=FakeClock(OPEN_WEEK))) as server:
            yield server.url
    finally:
        svc.engine.dispose()


@SCHEMA.parametrize()
@settings(
    phases=[Phase.explicit],  # schemathesis's examples and coverage cases; fuzzing is above
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_coverage_cases_and_unsupported_methods_answer_as_documented(
    case: Case[Any], api_url: str
) -> None:
    with requests.Session() as session:
        response = case.call(base_url=api_url, session=session, headers=AUTH)
    case.validate_response(response, checks=[*CHECKS, unsupported_method])
    headers = {k.lower(): v[0] for k, v in response.headers.items()}
    if response.status_code >= 400:
        assert_problem(response.status_code, headers["content-type"], response.json())
    documented = {method.upper() for method in DOCUMENT["paths"][case.path]}
    if case.method.upper() not in documented:  # a method the operation does not take
        assert response.status_code == 405
        # Starlette answers HEAD wherever GET is taken.
        assert set(headers["allow"].split(", ")) - {"HEAD"} == documented
