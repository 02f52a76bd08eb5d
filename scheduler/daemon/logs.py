"""Logging for the daemon: one JSON object per line (or text for a terminal), secrets redacted.

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

import json as jsonlib
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import IO, Any

from pydantic import SecretBytes, SecretStr

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
    text = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    text = _BEARER.sub(rf"\1 {MASK}", text)
    return _KEY_VALUE.sub(rf"\1={MASK}", text)


def redact(key: str, value: Any) -> Any:
    """Return ``value`` fit for a log: masked under a sensitive key, scrubbed otherwise.

    Containers are walked so that ``{"smtp": {"password": …}}`` is caught too. Values that are
    not JSON types become strings here, scrubbed like any other text.
    """
    if value is None:
        return None
    if isinstance(value, SecretStr | SecretBytes) or (key and SENSITIVE_KEY.search(key)):
        return MASK
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


class TextFormatter(logging.Formatter):
    """Format a record for a terminal: ``ts LEVEL logger msg key=value …`` then the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in extra_fields(record).items())
        line = (
            f"{rfc3339(record.created)} {record.levelname:<7} {record.name} {record.getMessage()}"
        )
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
    return jsonlib.dumps(text) if not text or any(c.isspace() or c in '"=' for c in text) else text


def configure_logging(
    level: str, *, json: bool = True, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (default: ``sys.stderr``).

    Installs one handler on the root logger, replacing the one an earlier call installed and
    leaving any other (pytest's capture, say) alone; below DEBUG, ``QUIET_LOGGERS`` only pass
    warnings and errors. Returns the handler.
    """
    # ``sys.stderr`` is read now, not at import: a test or a daemonizer may have replaced it.
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
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
