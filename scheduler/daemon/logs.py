"""Logging for the daemon: one JSON object per line, or coloured text on a terminal; secrets
redacted; one line per delivery outcome.

The standard library's ``logging``, not structlog: uvicorn, alembic, APScheduler and aiosmtplib
all log through it, so one handler, one redaction filter and one format cover every line the
process writes, with no second pipeline to keep in step and no dependency added.

Log calls pass their fields as ``extra``; each becomes a key of the JSON object::

    log.info("reminder sent", extra={"action": "reminder_sent", "message_id": mid})
    {"ts": "2027-05-03T16:00:00.000Z", "level": "INFO", "logger": "tickler",
     "msg": "reminder sent", "action": "reminder_sent", "message_id": "<…@tickler>"}

Redaction happens in a filter on the handler, before any formatting, so that neither format can
leak: values of keys named like a password, token, secret or authorization, every ``SecretStr``
and the password of any ``scheme://user:password@host`` URL, in the message, its arguments,
the extra fields and the exception text.
"""

from __future__ import annotations

import functools
import json as jsonlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, Any

from pydantic import SecretBytes, SecretStr

if TYPE_CHECKING:  # the CLI imports this module; the delivery job is not needed to log
    from jobs.deliver import Delivered

MASK = "***"
# Key names whose values are never logged; matched anywhere in the name (smtp_password, api_token).
# Name a token's *name* ``actor``, not ``token``, if it should appear in the log.
SENSITIVE_KEY = re.compile(
    r"passw(or)?d|passphrase|secret|token|authori[sz]ation|api_?key|cookie|credential", re.I
)
# scheme://user:password@host -> scheme://user:***@host (a password cannot hold a raw @ or /).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", re.I)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
# key=value pairs in free text (libpq DSNs, legacy "password=…" messages).
_KEY_VALUE = re.compile(r"\b(password|passwd|secret|token)=(?!\*\*\*)[^\s&;,]+", re.I)
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_CORE_KEYS = ("ts", "level", "logger", "msg", "exc", "stack")
_HANDLER_MARK = "_tickler_handler"
# Libraries whose INFO lines are noise in a daemon's log (alembic's plugin setup, APScheduler's
# "Added job"): shown from WARNING up unless the level is DEBUG.
QUIET_LOGGERS = ("alembic", "apscheduler")


def scrub(text: str) -> str:
    """Return ``text`` with URL passwords, bearer credentials and ``password=…`` masked."""
    # Each pattern runs only where it could match: a delivery's log line scrubs a dozen
    # values, and the substitutions cost far more than these tests.
    if "@" in text and "://" in text:
        text = _URL_PASSWORD.sub(_url_mask, text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _BEARER.sub(_bearer_mask, text)
    if "=" in text:
        text = _KEY_VALUE.sub(_key_value_mask, text)
    return text


def _url_mask(found: re.Match[str]) -> str:
    return f"{found['head']}:{MASK}@"


def _bearer_mask(found: re.Match[str]) -> str:
    return f"{found[1]} {MASK}"


def _key_value_mask(found: re.Match[str]) -> str:
    return f"{found[1]}={MASK}"


def redact(key: str, value: Any) -> Any:
    """Return ``value`` fit for a log: masked under a sensitive key, scrubbed otherwise.

    Containers are walked so that ``{"smtp": {"password": …}}`` is caught too. Values that are
    not JSON types become strings here, scrubbed like any other text.
    """
    if value is None:
        return None
    if (key and _sensitive(key)) or isinstance(value, SecretStr | SecretBytes):
        return MASK
    # The common types first: a delivery's line redacts a dozen strings and numbers.
    if type(value) is str:
        return scrub(value)
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact("", v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return scrub(str(value))


@functools.lru_cache(maxsize=1024)
def _sensitive(key: str) -> bool:
    # Field names repeat from line to line; the pattern is searched once per name.
    return SENSITIVE_KEY.search(key) is not None


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Return the fields a log call passed in ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_KEYS}


class RedactFilter(logging.Filter):
    """Mask secrets in a record in place: message, arguments, extra fields, exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, Mapping):
            record.args = {k: redact(str(k), v) for k, v in args.items()}
        elif args:
            record.args = tuple(_redact_arg(v) for v in args)
        # Format once here, so that what a format string builds from its parts is scrubbed too.
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report, unformatted
            message = None
        if message is not None:
            record.msg = scrub(message)
            record.args = None
        for key, value in extra_fields(record).items():
            setattr(record, key, redact(key, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def _redact_arg(value: Any) -> Any:
    # %-style arguments keep their type (``%d`` needs an int); only secrets and text change.
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    return value


_EXC_FORMATTER = logging.Formatter()


def rfc3339(created: float) -> str:
    """Return a record's time as RFC 3339 UTC with milliseconds: ``2027-05-03T16:00:00.000Z``."""
    instant = datetime.fromtimestamp(created, UTC)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, logger, msg, the extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            # An extra named like a core key must not overwrite it (``extra={"level": 3}``).
            entry[f"extra_{key}" if key in _CORE_KEYS else key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(entry, ensure_ascii=False, default=str)


# SGR colours of the text format: the level by severity, the time and field names dimmed.
_LEVEL_COLOURS = {"DEBUG": "2", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
_DIM, _BOLD, _RESET = "\x1b[2m", "\x1b[1m", "\x1b[0m"


class TextFormatter(logging.Formatter):
    """Format a record for a terminal: ``ts LEVEL logger msg key=value …`` then the traceback.

    With ``colour``, the level is coloured by severity, the message bold, the time and the
    field names dimmed; the words are the same, so a copied line reads the same.
    """

    def __init__(self, *, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        items = extra_fields(record).items()
        ts, level, message = rfc3339(record.created), f"{record.levelname:<7}", record.getMessage()
        if self.colour:
            ts = f"{_DIM}{ts}{_RESET}"
            level = f"\x1b[{_LEVEL_COLOURS.get(record.levelname, '0')}m{level}{_RESET}"
            message = f"{_BOLD}{message}{_RESET}"
            fields = " ".join(f"{_DIM}{k}={_RESET}{_text_value(v)}" for k, v in items)
        else:
            fields = " ".join(f"{k}={_text_value(v)}" for k, v in items)
        line = f"{ts} {level} {record.name} {message}"
        if fields:
            line = f"{line} {fields}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else jsonlib.dumps(value, default=str)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return jsonlib.dumps(text, ensure_ascii=False)
    return text


def is_terminal(stream: IO[str]) -> bool:
    """Return whether ``stream`` is a terminal (a person reads it, not a log collector)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def configure_logging(
    level: str,
    *,
    json: bool | None = None,
    colour: bool | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (default: ``sys.stderr``).

    ``json`` None chooses by the stream: text on a terminal, JSON otherwise (a pipe, a file,
    a container's log driver). ``colour`` None colours text on a terminal unless ``NO_COLOR``
    is set or ``TERM`` is ``dumb`` (https://no-color.org). Installs one handler on the root
    logger, replacing the one an earlier call installed and leaving any other (pytest's
    capture, say) alone; below DEBUG, ``QUIET_LOGGERS`` only pass warnings and errors.
    Returns the handler.
    """
    # ``sys.stderr`` is read now, not at import: a test or a daemonizer may have replaced it.
    out = stream if stream is not None else sys.stderr
    terminal = is_terminal(out)
    if json is None:
        json = not terminal
    if colour is None:
        colour = terminal and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if json else TextFormatter(colour=colour))
    handler.addFilter(RedactFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # APScheduler warns each time a wake is skipped because the previous one still runs: with
    # max_instances=1 that is the coalescing the daemon wants, not news.
    logging.getLogger("apscheduler.scheduler").setLevel(
        logging.NOTSET if quiet == logging.NOTSET else logging.ERROR
    )
    return handler


# One line per delivery outcome -------------------------------------------------------------

_DELIVERY_LEVELS = {
    "sent": logging.INFO,
    "skipped": logging.INFO,
    "retried": logging.WARNING,
    "failed": logging.ERROR,
}


def recipient_domain(address: str) -> str:
    """Return the domain of ``address`` (what a delivery line says of its recipient)."""
    return address.rpartition("@")[2].lower()


def log_delivered(
    outcome: Delivered,
    *,
    owner: str,
    full_address: bool = False,
    logger: logging.Logger | None = None,
) -> None:
    """Write the line of one delivery outcome, as Postfix writes one per message.

    Fields: ``action`` (``message_sent``, ``message_retried``, ``message_failed`` or
    ``message_skipped``), ``identity``, ``message_id``, ``program``, ``job``,
    ``recipient_domain`` (``recipient``, the whole address, instead when ``full_address``),
    ``attempt``, ``code`` (the server's reply code; null without one), ``owner``; a sent
    message adds ``lateness_seconds`` (due time to acceptance), the others ``detail`` (the
    server's answer or the reason, the recipient's address in it reduced to its domain), and
    an outcome written after another claim took the row adds ``lease_lost: true``.
    """
    recipient = outcome.recipient
    fields: dict[str, Any] = {
        "action": f"message_{outcome.outcome}",
        "identity": outcome.identity,
        "message_id": outcome.message_id,
        "program": outcome.program,
        "job": outcome.job,
    }
    if full_address:
        fields["recipient"] = recipient
    else:
        fields["recipient_domain"] = recipient_domain(recipient)
    fields |= {"attempt": outcome.attempt, "code": outcome.code, "owner": owner}
    if outcome.outcome == "sent":
        fields["lateness_seconds"] = round((outcome.at - outcome.due_at).total_seconds(), 3)
    else:
        detail = outcome.detail
        if not full_address and recipient:
            detail = detail.replace(recipient, f"…@{recipient_domain(recipient)}")
        fields["detail"] = detail
    if not outcome.recorded:
        fields["lease_lost"] = True
    level = _DELIVERY_LEVELS.get(outcome.outcome, logging.INFO)
    (logger or _DELIVERY_LOG).log(level, f"message {outcome.outcome}", extra=fields)


_DELIVERY_LOG = logging.getLogger("tickler.delivery")
