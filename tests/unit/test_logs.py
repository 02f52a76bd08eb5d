"""The log format: one JSON object per line, extra fields as keys, secrets never written."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from jobs.deliver import Delivered
from scheduler.daemon.logs import (
    MASK,
    QUIET_LOGGERS,
    RedactFilter,
    configure_logging,
    log_delivered,
    redact,
    scrub,
)

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Route the root logger to a buffer; restore the root logger afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    buffer = io.StringIO()
    yield buffer
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture
def lines(stream: io.StringIO) -> Lines:
    configure_logging("DEBUG", stream=stream)

    def read() -> list[dict[str, Any]]:
        text = stream.getvalue()
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]

    return read


log = logging.getLogger("tickler.test")


def test_one_json_object_per_line(lines: Lines) -> None:
    log.info("first")
    log.warning("second %s", "line")
    first, second = lines()
    assert set(first) == {"ts", "level", "logger", "msg"}
    assert first["level"] == "INFO"
    assert first["logger"] == "tickler.test"
    assert first["msg"] == "first"
    assert second["msg"] == "second line"
    assert second["level"] == "WARNING"
    # RFC 3339 in UTC, with milliseconds.
    assert first["ts"].endswith("Z")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    instant = datetime.fromisoformat(first["ts"])
    assert instant.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - instant) < timedelta(minutes=1)


def test_extra_fields_become_keys(lines: Lines) -> None:
    log.info(
        "reminder sent",
        extra={
            "action": "reminder_sent",
            "message_id": "<cutoff-7d.E1001@tickler>",
            "person_id": 17,
            "program": "option-exchange-2003",
            "identity": "option-exchange-2003/cutoff-reminder/7d/E1001",
            "code": 250,
        },
    )
    (entry,) = lines()
    assert entry["action"] == "reminder_sent"
    assert entry["message_id"] == "<cutoff-7d.E1001@tickler>"
    assert entry["person_id"] == 17
    assert entry["program"] == "option-exchange-2003"
    assert entry["identity"] == "option-exchange-2003/cutoff-reminder/7d/E1001"
    assert entry["code"] == 250


def test_an_extra_named_like_a_core_key_does_not_replace_it(lines: Lines) -> None:
    log.info("x", extra={"level": 3, "ts": "then"})
    (entry,) = lines()
    assert entry["level"] == "INFO"
    assert entry["extra_level"] == 3
    assert entry["extra_ts"] == "then"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:p@h/db", f"postgresql://u:{MASK}@h/db"),
        (
            "connecting to postgresql+psycopg://tickler:s3cr%40t@db.internal:5432/tickler",
            f"connecting to postgresql+psycopg://tickler:{MASK}@db.internal:5432/tickler",
        ),
        ("smtp://:only-password@relay", f"smtp://:{MASK}@relay"),
        ("postgresql://tickler@postgres/tickler", "postgresql://tickler@postgres/tickler"),
        ("http://127.0.0.1:8080/healthz", "http://127.0.0.1:8080/healthz"),
        ("Authorization: Bearer hr-secret-0123456789", f"Authorization: Bearer {MASK}"),
        ("host=db password=hunter2 user=tickler", f"host=db password={MASK} user=tickler"),
        ("sent=3 failed=0", "sent=3 failed=0"),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_a_password_in_a_url_is_masked_in_message_and_extras(lines: Lines) -> None:
    url = "postgresql://tickler:hunter2@postgres/tickler"
    log.info("database %s", url, extra={"database_url": url})
    (entry,) = lines()
    assert entry["msg"] == f"database postgresql://tickler:{MASK}@postgres/tickler"
    assert entry["database_url"] == f"postgresql://tickler:{MASK}@postgres/tickler"
    assert "hunter2" not in json.dumps(entry)


@pytest.mark.parametrize(
    "key", ["password", "smtp_password", "token", "api_tokens", "secret", "Authorization"]
)
def test_a_sensitive_key_is_masked(lines: Lines, key: str) -> None:
    log.info("settings", extra={key: "hr:hr-secret-0123456789", "action": "configured"})
    (entry,) = lines()
    assert entry[key] == MASK
    assert entry["action"] == "configured"


def test_secret_values_are_masked_wherever_they_are(lines: Lines) -> None:
    secret = SecretStr("hr-secret-0123456789")
    log.info(
        "token %s used",
        secret,
        extra={"actor": "hr", "credentials": {"smtp": {"password": "pw"}}, "value": secret},
    )
    (entry,) = lines()
    text = json.dumps(entry)
    assert "hr-secret" not in text
    assert "pw" not in json.dumps(entry["credentials"])
    assert entry["actor"] == "hr"
    assert entry["value"] == MASK


def test_redact_walks_containers() -> None:
    value = {"smtp": {"host": "relay", "password": "pw"}, "urls": ["redis://:pw@cache/0"]}
    assert redact("config", value) == {
        "smtp": {"host": "relay", "password": MASK},
        "urls": [f"redis://:{MASK}@cache/0"],
    }


def test_an_exception_is_written_as_exc_text_and_scrubbed(lines: Lines) -> None:
    try:
        raise ConnectionError("could not reach postgresql://tickler:hunter2@postgres/tickler")
    except ConnectionError:
        log.exception("tick failed", extra={"action": "tick_failed"})
    (entry,) = lines()
    assert entry["level"] == "ERROR"
    assert entry["action"] == "tick_failed"
    assert entry["exc"].startswith("Traceback (most recent call last):")
    assert (
        "ConnectionError: could not reach postgresql://tickler:***@postgres/tickler"
        in (entry["exc"])
    )
    assert "hunter2" not in entry["exc"]


@pytest.mark.parametrize(
    ("level", "written"),
    [
        ("DEBUG", ["DEBUG", "INFO", "WARNING", "ERROR"]),
        ("INFO", ["INFO", "WARNING", "ERROR"]),
        ("warning", ["WARNING", "ERROR"]),
        ("ERROR", ["ERROR"]),
    ],
)
def test_level_filtering(stream: io.StringIO, level: str, written: list[str]) -> None:
    configure_logging(level, stream=stream)
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [json.loads(line)["level"] for line in stream.getvalue().splitlines()] == written


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_library_chatter_is_quiet_unless_debugging(
    stream: io.StringIO, level: str, shown: bool
) -> None:
    configure_logging(level, stream=stream)
    logging.getLogger("apscheduler.scheduler").info("Added job")
    logging.getLogger("alembic.runtime.plugins").warning("a real problem")
    messages = [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]
    assert messages == (["Added job"] if shown else []) + ["a real problem"]


def test_configuring_twice_replaces_the_handler(stream: io.StringIO) -> None:
    other = io.StringIO()
    configure_logging("INFO", stream=other)
    configure_logging("INFO", stream=stream)
    log.info("once")
    assert other.getvalue() == ""
    assert len(stream.getvalue().splitlines()) == 1


def test_a_bad_format_string_is_left_to_the_handler() -> None:
    # The filter runs outside the handler's error handling: it must not raise in the caller.
    record = log.makeRecord(log.name, logging.INFO, __file__, 1, "%d widgets", ("many",), None)
    assert RedactFilter().filter(record)
    assert (record.msg, record.args) == ("%d widgets", ("many",))


def test_text_format(stream: io.StringIO) -> None:
    configure_logging("INFO", json=False, stream=stream)
    log.info("started", extra={"action": "started", "owner": "host:1 x", "token": "t0ps3cret"})
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(
        f'INFO    tickler.test started action=started owner="host:1 x" token={MASK}'
    )


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does when a person runs the daemon."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("terminal", "env", "expected"),
    [
        (False, {}, "json"),
        (True, {}, "colour"),
        (True, {"NO_COLOR": "1"}, "text"),
        (True, {"TERM": "dumb"}, "text"),
    ],
    ids=["piped: json", "terminal: colour", "NO_COLOR", "dumb terminal"],
)
def test_the_format_follows_the_stream(
    stream: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    terminal: bool,
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = Terminal() if terminal else io.StringIO()
    configure_logging("INFO", stream=out)
    log.warning("started", extra={"action": "started"})
    (line,) = out.getvalue().splitlines()
    if expected == "json":
        assert json.loads(line)["action"] == "started"
        return
    assert not line.startswith("{")
    coloured = "\x1b[" in line
    assert coloured == (expected == "colour")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
    assert plain.endswith("WARNING tickler.test started action=started")
    if coloured:
        assert "\x1b[33mWARNING" in line  # the level by severity


def delivered(outcome: str = "sent", **changes: Any) -> Delivered:
    due = datetime(2017, 1, 9, 17, tzinfo=UTC)
    values: dict[str, Any] = {
        "outcome": outcome,
        "identity": "conflict-minerals-2016/2016/supplier:S001/request/wave-1",
        "message_id": "abc.conflict-minerals-2016@tickler",
        "program": "conflict-minerals-2016",
        "job": "cmrt_request",
        "recipient": "Ada.Byrne@Supplier.example",
        "due_at": due,
        "at": due + timedelta(seconds=90, milliseconds=250),
        "attempt": 1,
        "code": 250,
    }
    return Delivered(**(values | changes))


def test_one_line_per_delivery_with_the_recipient_domain_only(lines: Lines) -> None:
    log_delivered(delivered(), owner="host:1:ab")
    log_delivered(
        delivered(
            "failed",
            code=550,
            detail="5.1.1 <Ada.Byrne@Supplier.example>: no such user",
        ),
        owner="host:1:ab",
    )
    log_delivered(delivered("retried", code=None, detail="cannot connect"), owner="host:1:ab")
    sent, failed, retried = lines()
    assert sent == {
        "ts": sent["ts"],
        "level": "INFO",
        "logger": "tickler.delivery",
        "msg": "message sent",
        "action": "message_sent",
        "identity": "conflict-minerals-2016/2016/supplier:S001/request/wave-1",
        "message_id": "abc.conflict-minerals-2016@tickler",
        "program": "conflict-minerals-2016",
        "job": "cmrt_request",
        "recipient_domain": "supplier.example",
        "attempt": 1,
        "code": 250,
        "owner": "host:1:ab",
        "lateness_seconds": 90.25,
    }
    assert (failed["level"], failed["action"], failed["code"]) == ("ERROR", "message_failed", 550)
    assert failed["detail"] == "5.1.1 <…@supplier.example>: no such user"
    assert "Ada.Byrne" not in json.dumps([sent, failed, retried])
    assert (retried["level"], retried["code"], retried["detail"]) == (
        "WARNING",
        None,
        "cannot connect",
    )


def test_the_full_address_when_the_setting_allows_it_and_secrets_still_masked(
    lines: Lines,
) -> None:
    detail = "refused by smtp://relay:hunter2@mx.example: Ada.Byrne@Supplier.example"
    log_delivered(
        delivered("failed", code=554, detail=detail, recorded=False),
        owner="host:1:ab",
        full_address=True,
    )
    (line,) = lines()
    assert line["recipient"] == "Ada.Byrne@Supplier.example"
    assert "recipient_domain" not in line
    assert (
        line["detail"] == f"refused by smtp://relay:{MASK}@mx.example: Ada.Byrne@Supplier.example"
    )
    assert line["lease_lost"] is True
