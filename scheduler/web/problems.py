"""Error responses as RFC 9457 problem details: ``application/problem+json``.

Every error the HTTP interface answers has this one shape, the API's refusals as much as an
unknown path (404) or a method a path does not take (405, with ``Allow``)::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "program: Field required", "errors": [{"field": "program",
     "pointer": "#/program", "detail": "Field required"}]}

``type`` is ``about:blank`` (RFC 9457 section 4.2.1): the status code says what kind of
problem it is and ``title`` is its phrase; ``detail`` says what is wrong with this request;
``errors`` (422 only) names each invalid field, as a JSON Pointer into the body too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str = Field(description="The field, dotted (``hire.email``); ``body`` for the whole")
    pointer: str = Field(description="The field as a JSON Pointer into the body (RFC 6901)")
    detail: str = Field(description="What is wrong with it")


class Problem(BaseModel):
    """An error (RFC 9457 problem details)."""

    type: str = Field(default="about:blank", description="``about:blank``: see the status")
    title: str = Field(description="The status code's phrase")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What is wrong with this request")
    errors: list[FieldError] | None = Field(default=None, description="Each invalid field (422)")


def problem(
    status: int,
    detail: str,
    *,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Return the problem+json response for ``status`` saying ``detail``."""
    body = Problem(title=HTTPStatus(status).phrase, status=status, detail=detail, errors=errors)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_JSON,
    )


def pointer(parts: Sequence[str | int]) -> str:
    """Return the JSON Pointer (as a URI fragment) of a field's location in the body."""
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return "#/" + "/".join(escaped) if parts else "#"
