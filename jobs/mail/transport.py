"""Deliver outgoing messages over SMTP or into a Maildir, and say what happened.

A transport never raises for a delivery problem: it returns a DeliveryResult whose
status tells the outbox what to do next. SENT: the server answered 250 to DATA, commit
at once. TEMPORARY: retry later with the same Message-ID. PERMANENT: record and report.
"""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import Default

from jobs.mail.mime import (
    OutgoingMessage,
    build_mime,
    envelope_recipients,
    envelope_sender,
    mime_bytes,
)

__all__ = [
    "DeliveryResult",
    "DeliveryStatus",
    "MaildirTransport",
    "OutgoingMessage",
    "SmtpTransport",
    "Transport",
    "build_mime",
]

Security = Literal["none", "starttls", "tls"]


class DeliveryStatus(StrEnum):
    """What the outbox should do with a message after one delivery attempt."""

    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    """What the server said about one message.

    code is the SMTP reply code that decided the status (250 when sent, None when there
    was no reply: connection failures, timeouts, local errors). refused lists the
    recipients the server refused one by one, also when it accepted the others. data is
    the message's bytes as handed over when it was sent (what the outbox keeps as evidence).
    """

    status: DeliveryStatus
    code: int | None
    detail: str
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    data: bytes | None = None


class Transport(Protocol):
    """Something that delivers messages: SmtpTransport, MaildirTransport, a test fake.

    send() reports every problem with the message or its delivery in the result; it
    raises only for programming errors (e.g. a send after close()).
    """

    async def send(self, msg: OutgoingMessage, *, date: datetime) -> DeliveryResult: ...

    async def close(self) -> None: ...


def _temporary(detail: str, code: int | None = None) -> DeliveryResult:
    return DeliveryResult(status=DeliveryStatus.TEMPORARY, code=code, detail=detail)


def _permanent(detail: str, code: int | None = None) -> DeliveryResult:
    return DeliveryResult(status=DeliveryStatus.PERMANENT, code=code, detail=detail)


def _by_code(code: int, detail: str) -> DeliveryResult:
    # 4xx and anything unexpected may succeed later; only 5xx is final. Except 530
    # "authentication required" (RFC 4954): our missing credentials, not the message's
    # fault, and every message would fail the same way until the settings are fixed.
    if 500 <= code < 600 and code != 530:
        return _permanent(detail, code)
    return _temporary(detail, code)


def _all_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> DeliveryResult:
    refused = {err.recipient: (err.code, err.message) for err in exc.recipients}
    # A single temporary refusal makes the whole message worth retrying: nobody got it.
    deciding = next((err for err in exc.recipients if not 500 <= err.code < 600), None)
    deciding = deciding or exc.recipients[0]
    result = _by_code(deciding.code, f"all recipients refused: {deciding.message}")
    return DeliveryResult(
        status=result.status, code=result.code, detail=result.detail, refused=refused
    )


def _invalid(exc: ValueError) -> DeliveryResult:
    # A message that cannot be built will not build better later: report, don't retry.
    return _permanent(f"invalid message: {exc}")


class _Socket(Protocol):
    def fileno(self) -> int: ...


class _Client(aiosmtplib.SMTP):
    """Remember whether the message body went out; report each closed socket to on_close."""

    data_started = False

    def __init__(self, *, on_close: Callable[[_Socket], None], **options: Any) -> None:
        super().__init__(**options)
        self._on_close = on_close

    def close(self) -> None:
        # aiosmtplib closes through here on every path (QUIT, errors, lost connections).
        # Closing a TLS connection is an exchange with the server that finishes later, and
        # asyncio warns about sockets still open when its loop ends: keep them to wait for.
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                self._on_close(sock)
        super().close()

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> SMTPResponse:
        self.data_started = True
        return await super().data(message, timeout=timeout)


def _mail_options(sender: str, recipients: list[str]) -> list[str]:
    # What send_message() would add. A non-ASCII domain (the header has its IDNA form) needs
    # a server with SMTPUTF8; without it aiosmtplib raises SMTPNotSupported: permanent.
    if sender.isascii() and all(address.isascii() for address in recipients):
        return []
    return ["SMTPUTF8"]


class _StaleConnection(Exception):
    """A reused connection failed before DATA: nothing was sent, a fresh one may retry."""


# Failures while opening a connection: they concern the relay (address, TLS, credentials),
# not the message, so they are all TEMPORARY whatever the reply code. A wrong password
# must not turn every pending reminder into a permanent failure.
_SETUP_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


class SmtpTransport:
    """Send through one SMTP relay over a pool of up to `connections` reused connections.

    Each connection carries one message at a time, so `connections` messages can be in
    flight at once. A connection that breaks is dropped and a new one opened on demand;
    if a reused connection turns out to be dead (a disconnect, a timeout or a 421) before
    any of the message was sent, the message is sent again at once on a fresh connection.

    security: "starttls" requires STARTTLS (the connection fails if the server does not
    offer it), "tls" is implicit TLS (port 465), "none" is plain text for local relays
    and tests. tls_context, when given, replaces the default context, and then
    validate_certs is ignored (aiosmtplib uses the context as it is). timeout applies to
    each socket operation, not to a whole message.

    Classification: 4xx replies are TEMPORARY, 5xx PERMANENT; refusals of some
    recipients are reported in `refused` of a SENT result; connection failures,
    disconnects and timeouts are TEMPORARY with code None. Failures to set a connection
    up (greeting, EHLO, STARTTLS, AUTH) and 530 "authentication required" are TEMPORARY
    whatever the code: they are the relay settings' fault, not the message's.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        security: Security = "starttls",
        timeout: float = 30,
        connections: int = 4,
        tls_context: ssl.SSLContext | None = None,
        validate_certs: bool = True,
        local_hostname: str | None = None,
    ) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be none, starttls or tls, not {security!r}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._security = security
        self._timeout = timeout
        self._tls_context = tls_context
        self._validate_certs = validate_certs
        self._local_hostname = local_hostname
        # Idle connections and free slots in one queue: None is a slot with no connection
        # yet. Last in, first out, so that a light load keeps reusing one warm connection.
        self._pool: asyncio.LifoQueue[_Client | None] = asyncio.LifoQueue()
        for _ in range(connections):
            self._pool.put_nowait(None)
        self._connections = connections
        self._closed = False
        self._closing: list[_Socket] = []
        # aiosmtplib checks its options when a client is built: fail here, not at a send.
        self._new_client()

    async def send(self, msg: OutgoingMessage, *, date: datetime) -> DeliveryResult:
        """Send msg (dated date) and report the outcome; never raises for delivery."""
        if self._closed:
            raise RuntimeError("SmtpTransport is closed")
        try:
            data = mime_bytes(msg, date=date)
            sender = envelope_sender(msg)
            recipients = envelope_recipients(msg)
        except ValueError as exc:
            return _invalid(exc)

        client = await self._pool.get()
        keep: _Client | None = None
        try:
            result, keep = await self._send_on(client, data, sender, recipients)
        finally:
            if keep is not None and self._closed:
                keep.close()
                keep = None
            self._pool.put_nowait(keep)
        return result

    async def close(self) -> None:
        """Close the pool once the sends in flight are done; later sends raise.

        Idle connections get a QUIT; then this waits (at most `timeout`) until their
        sockets are really closed, which for TLS takes an exchange with the server.
        """
        if self._closed:
            return
        self._closed = True
        for _ in range(self._connections):
            client = await self._pool.get()
            if client is not None:
                await _retire(client)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while any(sock.fileno() != -1 for sock in self._closing) and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def _send_on(
        self, client: _Client | None, data: bytes, sender: str, recipients: list[str]
    ) -> tuple[DeliveryResult, _Client | None]:
        if client is not None and client.is_connected:
            try:
                return await self._transact(client, data, sender, recipients, reused=True)
            except _StaleConnection:
                pass
        elif client is not None:
            client.close()

        client = self._new_client()
        try:
            await client.connect()
        except _SETUP_ERRORS as exc:
            client.close()
            code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
            return _temporary(f"cannot connect to {self._host}:{self._port}: {exc}", code), None
        except BaseException:
            client.close()
            raise
        return await self._transact(client, data, sender, recipients, reused=False)

    async def _transact(
        self,
        client: _Client,
        data: bytes,
        sender: str,
        recipients: list[str],
        *,
        reused: bool,
    ) -> tuple[DeliveryResult, _Client | None]:
        client.data_started = False
        options = _mail_options(sender, recipients)
        try:
            # The bytes as built, not send_message(): that would serialise an EmailMessage
            # again with email.policy.SMTP, which costs more than the rest of the send.
            refused, reply = await client.sendmail(sender, recipients, data, mail_options=options)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
            client.close()
            if reused and not client.data_started:
                raise _StaleConnection from exc
            # After the body went out this is the ambiguous window: the server may have
            # queued the message. The outbox retries with the same Message-ID.
            return _temporary(str(exc)), None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await _retire(client)
            return _all_refused(exc), None
        except aiosmtplib.SMTPResponseException as exc:
            await _retire(client)
            # 421 is a server closing an idle connection (Postfix: "timeout exceeded").
            if exc.code == 421 and reused and not client.data_started:
                raise _StaleConnection from exc
            return _by_code(exc.code, exc.message), None
        except aiosmtplib.SMTPNotSupported as exc:
            # E.g. a non-ASCII address and a server without SMTPUTF8: retrying won't help.
            await _retire(client)
            return _permanent(str(exc)), None
        except ValueError as exc:
            # aiosmtplib refuses addresses that are unsafe on an SMTP command line.
            await _retire(client)
            return _invalid(exc), None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            return _temporary(str(exc)), None
        except BaseException:
            # Cancelled mid-transaction: the connection is in an unknown state.
            client.close()
            raise
        result = DeliveryResult(
            status=DeliveryStatus.SENT,
            code=250,
            detail=reply,
            refused={address: (r.code, r.message) for address, r in refused.items()},
            data=data,
        )
        return result, client

    def _closed_socket(self, sock: _Socket) -> None:
        self._closing = [s for s in self._closing if s.fileno() != -1]
        self._closing.append(sock)

    def _new_client(self) -> _Client:
        return _Client(
            on_close=self._closed_socket,
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password,
            local_hostname=self._local_hostname,
            timeout=self._timeout,
            use_tls=self._security == "tls",
            # True requires STARTTLS; aiosmtplib's default (None) would silently go on
            # in plain text when the server does not offer it.
            start_tls=self._security == "starttls",
            validate_certs=self._validate_certs,
            tls_context=self._tls_context,
        )


async def _retire(client: _Client) -> None:
    """Close client politely: QUIT if it is still connected, then close."""
    if client.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await client.quit()
    client.close()


class MaildirTransport:
    """Deliver into a Maildir instead of a server: for development, demos and tests.

    Every message is SENT unless writing fails (OSError: read-only directory, full
    disk), which is TEMPORARY with the error text.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        # mailbox is blocking and not made for concurrent writers: one write at a time.
        self._lock = asyncio.Lock()

    async def send(self, msg: OutgoingMessage, *, date: datetime) -> DeliveryResult:
        """Write msg into the Maildir's new/ folder and report the outcome."""
        try:
            # Files in a Maildir use the local line ending, not SMTP's CRLF.
            data = mime_bytes(msg, date=date, linesep="\n")
        except ValueError as exc:
            return _invalid(exc)
        try:
            async with self._lock:
                key = await asyncio.to_thread(self._write, data)
        except OSError as exc:
            return _temporary(f"cannot write to maildir {self._path}: {exc}")
        return DeliveryResult(status=DeliveryStatus.SENT, code=None, detail=key, data=data)

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its own files."""

    def _write(self, data: bytes) -> str:
        return mailbox.Maildir(self._path, create=True).add(data)
