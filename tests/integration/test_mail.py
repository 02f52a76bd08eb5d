"""The mail transports against a real aiosmtpd server running in a thread of this process
(``tests.smtp_sink``)."""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import mailbox
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from jobs.mail.mime import mime_bytes
from jobs.mail.transport import (
    DeliveryResult,
    DeliveryStatus,
    MaildirTransport,
    OutgoingMessage,
    SmtpTransport,
    build_mime,
)
from tests.smtp_sink import LOCAL_HOSTNAME, Server, sinks

DATE = datetime(2027, 5, 31, 13, 0, tzinfo=UTC)
INJECTION = "\r\nBcc: evil@example.com"
CALENDAR = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Tickler//tests//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:form-sd-2027@tickler\r\nDTSTAMP:20270501T000000Z\r\n"
    "DTSTART;VALUE=DATE:20270601\r\nSEQUENCE:0\r\nSUMMARY:Form SD fällig\r\n"
    "END:VEVENT\r\nEND:VCALENDAR\r\n"
).encode()


def message(n: int = 0, **changes: Any) -> OutgoingMessage:
    """Return a reminder numbered n, with fields replaced by changes."""
    base = OutgoingMessage(
        message_id=f"cm-2027.{n:04d}@tickler",
        sender="Tickler Compliance <tickler@example.com>",
        to=("ada@example.com",),
        subject="Form SD due 1 June 2027",
        text="Form SD is due on 1 June 2027.\n",
        html="<p>Form SD is due on <b>1 June 2027</b>.</p>\n",
        headers=(("X-Tickler-Identity", f"form-sd/2027/{n}"),),
    )
    return dataclasses.replace(base, **changes)


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def parts(msg: EmailMessage) -> dict[str, EmailMessage]:
    """Return the leaf parts of msg by content type."""
    return {part.get_content_type(): part for part in msg.walk() if not part.is_multipart()}


# The server (tests.smtp_sink) -------------------------------------------------------


StartServer = Callable[..., Server]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Return a function that starts an aiosmtpd server with the given SMTP options."""
    with sinks() as started:
        yield started.start


@pytest.fixture
def server(start_server: StartServer) -> Server:
    return start_server()


@pytest.fixture
async def transport(server: Server) -> AsyncIterator[SmtpTransport]:
    smtp = server.transport()
    yield smtp
    await smtp.close()


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Wait until condition() holds; the server runs on another thread."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Return a self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    made = Certificate(cert=folder / "cert.pem", key=folder / "key.pem")
    args = ["req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    args += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]
    args += ["-keyout", str(made.key), "-out", str(made.cert)]
    subprocess.run([openssl, *args], check=True, capture_output=True)
    return made


@dataclass
class Authenticator:
    """aiosmtpd authenticator accepting one login; records the mechanisms that succeeded."""

    login: bytes
    password: bytes
    used: list[str] = field(default_factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (self.login, self.password)
        if ok:
            self.used.append(mechanism)
        return AuthResult(success=ok, handled=False)


def tls_server(start_server: StartServer, certificate: Certificate, **options: Any) -> Server:
    return start_server(tls_context=certificate.server_context(), require_starttls=True, **options)


# Building messages ----------------------------------------------------------------------


def test_build_mime_gives_text_html_and_calendar_alternatives() -> None:
    mime = build_mime(message(calendar=CALENDAR), date=DATE)

    assert mime.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mime.iter_parts()] == [
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    calendar = parts(parse(mime.as_bytes()))["text/calendar"]
    assert calendar["Content-Type"].params == {"charset": "utf-8", "method": "REQUEST"}
    assert calendar.get_payload(decode=True) == CALENDAR  # CRLF line ends on the wire
    assert mime["Message-ID"] == "<cm-2027.0000@tickler>"
    assert mime["Date"] == "Mon, 31 May 2027 13:00:00 +0000"
    assert b"\n" not in mime.as_bytes().replace(b"\r\n", b"")
    assert max(map(len, mime.as_bytes().split(b"\r\n"))) <= 78
    assert mime.as_bytes().isascii()  # 7-bit: no 8BITMIME needed
    assert build_mime(message(calendar=CALENDAR), date=DATE).as_bytes() == mime.as_bytes()


def test_build_mime_text_only_is_a_single_part() -> None:
    mime = build_mime(message(html=None), date=DATE)

    assert mime.get_content_type() == "text/plain"
    assert mime.get_content() == "Form SD is due on 1 June 2027.\n"


def test_build_mime_encodes_non_ascii_subject_and_names() -> None:
    msg = message(subject="Fälligkeit: Form SD – 1 June", sender="Zoë Åberg <tickler@example.com>")
    mime = build_mime(msg, date=DATE)

    raw_headers = mime.as_bytes().split(b"\r\n\r\n")[0]
    assert raw_headers.isascii()
    assert b"=?utf-8?" in raw_headers
    parsed = parse(mime.as_bytes())
    assert parsed["Subject"] == "Fälligkeit: Form SD – 1 June"
    assert parsed["From"].addresses[0].display_name == "Zoë Åberg"


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": f"Form SD{INJECTION}"},
        {"sender": f"Tickler{INJECTION} <tickler@example.com>"},
        {"sender": f'"Tickler{INJECTION}" <tickler@example.com>'},
        {"to": (f"Ada{INJECTION} <ada@example.com>",)},
        {"reply_to": f"Desk{INJECTION} <desk@example.com>"},
        {"headers": (("X-Tickler-Identity", f"form-sd{INJECTION}"),)},
        {"subject": "Form SD\u2028Bcc: evil@example.com"},
        {"subject": "Form SD\nBcc: evil@example.com"},
    ],
)
def test_line_breaks_in_header_text_add_no_header(changes: dict[str, Any]) -> None:
    data = build_mime(message(**changes), date=DATE).as_bytes()

    assert not re.search(rb"(?im)^bcc:", data)
    assert parse(data).get_all("Bcc") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"to": ("ada@example.com\r\nBcc: evil@example.com",)},
        {"to": ("Ada <ada@example.com\r\n>",)},
        {"to": ("ada@example.com, evil@example.com",)},
        {"to": ("not-an-address",)},
        {"to": ("ada@",)},
        {"to": ()},
        {"to": "ada@example.com"},
        {"sender": "tickler@example.com\nBcc: evil@example.com"},
        {"message_id": "<cm-2027.0000@tickler>"},
        {"message_id": "no-at-sign"},
        {"message_id": "cm@tickler\r\nBcc: evil@example.com"},
        {"headers": (("Bcc", "evil@example.com"),)},
        {"headers": (("X-Tickler\r\nBcc", "evil@example.com"),)},
        {"headers": (("Content-Type", "text/plain"),)},
        {"calendar": CALENDAR, "calendar_method": "CANCEL"},
        {"calendar": CALENDAR.replace(b"METHOD:REQUEST\r\n", b"")},
        {"calendar": b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nSUMMARY:\xff\r\nEND:VCALENDAR\r\n"},
        {"calendar_method": "REQUEST"},
    ],
)
def test_build_mime_rejects_what_it_cannot_send_safely(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_mime(message(**changes), date=DATE)


def test_build_mime_rejects_a_naive_date() -> None:
    with pytest.raises(ValueError, match="aware"):
        build_mime(message(), date=datetime(2027, 5, 31, 13, 0))


SHAPES = {
    "plain": {"html": None},
    "alternatives": {},
    "invitation": {"calendar": CALENDAR},
    "non-ascii": {
        "subject": "Fälligkeit: Form SD – 1 June " * 4,
        "sender": "Zoë Åberg <tickler@example.com>",
        "to": ("Ada Lovelace <ada@example.com>", '"Desk, Ops" <desk@example.com>') * 3,
        "reply_to": "Bureau d'Ève <desk@example.com>",
        "text": "Grüße " * 40 + "\n",
    },
    "cjk": {"text": "期限は六月一日です。" * 20 + "\n", "html": None},
    "long-identity": {"headers": (("X-Tickler-Identity", "form-sd/2027/" + "supplier:S1/" * 12),)},
}


@pytest.mark.parametrize("changes", SHAPES.values(), ids=SHAPES.keys())
def test_mime_bytes_are_what_build_mime_describes(changes: dict[str, Any]) -> None:
    msg = message(**changes)

    data = mime_bytes(msg, date=DATE)

    assert data == build_mime(msg, date=DATE).as_bytes()
    assert mime_bytes(msg, date=DATE, linesep="\n") == data.replace(b"\r\n", b"\n")
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(map(len, data.split(b"\r\n"))) <= 998
    got = parse(data)
    assert got["Subject"] == msg.subject.strip()
    for name, value in msg.headers:
        assert got[name] == value
    for part in parts(got).values():
        assert part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")
    assert parts(got)["text/plain"].get_content().replace("\r\n", "\n") == msg.text


def test_long_ascii_header_text_is_folded_at_spaces_not_encoded() -> None:
    subject = " ".join(f"word{n}" for n in range(40))

    data = mime_bytes(message(subject=subject), date=DATE)

    head = data.split(b"\r\n\r\n")[0]
    assert b"=?" not in head
    assert max(map(len, head.split(b"\r\n"))) <= 78
    assert parse(data)["Subject"] == subject


def test_an_x_header_word_longer_than_a_line_keeps_its_own_line() -> None:
    # Machine-read (test_campaigns reads X-Tickler-Identity): breaking it would change it.
    identity = "bench/daemon/supplier:S000001/request/wave-1/" + "x" * 100

    data = mime_bytes(message(headers=(("X-Tickler-Identity", identity),)), date=DATE)

    assert f"\r\nX-Tickler-Identity: {identity}\r\n".encode() in data
    assert parse(data)["X-Tickler-Identity"] == identity


def test_a_word_beyond_the_998_limit_becomes_encoded_words() -> None:
    identity = "x" * 1200

    data = mime_bytes(message(headers=(("X-Tickler-Identity", identity),)), date=DATE)

    assert max(map(len, data.split(b"\r\n"))) <= 78
    assert parse(data)["X-Tickler-Identity"] == identity


def test_text_that_looks_like_an_encoded_word_stays_literal() -> None:
    subject = "=?utf-8?q?Bcc=3A_evil=40example=2Ecom?="

    got = parse(mime_bytes(message(subject=subject), date=DATE))

    assert got["Subject"] == subject


def test_an_internationalised_domain_goes_in_the_header_as_its_a_label() -> None:
    data = mime_bytes(message(to=("Zoë <zoe@exämple.com>",)), date=DATE)

    got = parse(data)
    assert got["To"].addresses[0].addr_spec == "zoe@xn--exmple-cua.com"
    assert got["To"].addresses[0].display_name == "Zoë"


# SMTP -----------------------------------------------------------------------------------


async def test_plain_send_arrives_with_id_subject_and_both_parts(
    server: Server, transport: SmtpTransport
) -> None:
    result = await transport.send(message(), date=DATE)

    [received] = server.recorder.received
    # data: the bytes handed to the server, which the outbox keeps as evidence.
    assert result == DeliveryResult(
        status=DeliveryStatus.SENT,
        code=250,
        detail="2.0.0 Ok: queued",
        refused={},
        data=received.content,
    )
    assert received.mail_from == "tickler@example.com"
    assert received.rcpt_tos == ["ada@example.com"]
    got = parse(received.content)
    assert got["Message-ID"] == "<cm-2027.0000@tickler>"
    assert got["Subject"] == "Form SD due 1 June 2027"
    assert got["From"] == "Tickler Compliance <tickler@example.com>"
    assert got["X-Tickler-Identity"] == "form-sd/2027/0"
    assert got.get_content_type() == "multipart/alternative"
    by_type = parts(got)
    assert by_type["text/plain"].get_content() == "Form SD is due on 1 June 2027.\r\n"
    assert "<b>1 June 2027</b>" in by_type["text/html"].get_content()


async def test_invitation_has_a_calendar_part_with_method_request(
    server: Server, transport: SmtpTransport
) -> None:
    result = await transport.send(message(calendar=CALENDAR), date=DATE)

    assert result.status is DeliveryStatus.SENT
    got = parse(server.recorder.received[0].content)
    calendar = parts(got)["text/calendar"]
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content_charset() == "utf-8"
    assert calendar.get_payload(decode=True) == CALENDAR


async def test_451_on_data_is_temporary(server: Server, transport: SmtpTransport) -> None:
    server.recorder.data_reply = "451 4.3.0 try later"

    result = await transport.send(message(), date=DATE)

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, 451)
    assert "try later" in result.detail


@pytest.mark.parametrize(
    ("reply", "status", "code"),
    [
        ("550 5.1.1 no such user", DeliveryStatus.PERMANENT, 550),
        ("450 4.2.1 mailbox busy", DeliveryStatus.TEMPORARY, 450),
    ],
)
async def test_refusal_of_the_only_recipient(
    server: Server, transport: SmtpTransport, reply: str, status: DeliveryStatus, code: int
) -> None:
    server.recorder.rcpt_replies["ada@example.com"] = reply

    result = await transport.send(message(), date=DATE)

    assert (result.status, result.code) == (status, code)
    assert result.refused == {"ada@example.com": (code, reply[4:])}
    assert server.recorder.received == []


async def test_refusal_of_some_recipients_is_sent_and_reported(
    server: Server, transport: SmtpTransport
) -> None:
    server.recorder.rcpt_replies["bob@example.com"] = "550 5.1.1 no such user"

    result = await transport.send(message(to=("ada@example.com", "bob@example.com")), date=DATE)

    assert result.status is DeliveryStatus.SENT
    assert result.refused == {"bob@example.com": (550, "5.1.1 no such user")}
    assert server.recorder.received[0].rcpt_tos == ["ada@example.com"]


async def test_mixed_refusal_of_all_recipients_is_temporary(
    server: Server, transport: SmtpTransport
) -> None:
    server.recorder.rcpt_replies["ada@example.com"] = "550 5.1.1 no such user"
    server.recorder.rcpt_replies["bob@example.com"] = "451 4.3.0 try later"

    result = await transport.send(message(to=("ada@example.com", "bob@example.com")), date=DATE)

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, 451)
    assert set(result.refused) == {"ada@example.com", "bob@example.com"}


async def test_server_not_listening_is_temporary() -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        smtp = SmtpTransport(
            host="127.0.0.1",
            port=bound.getsockname()[1],
            security="none",
            local_hostname=LOCAL_HOSTNAME,
        )
        result = await smtp.send(message(), date=DATE)
        await smtp.close()

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, None)
    assert "cannot connect" in result.detail


async def test_injection_attempt_reaches_no_extra_recipient(
    server: Server, transport: SmtpTransport
) -> None:
    msg = message(
        subject=f"Form SD{INJECTION}",
        sender=f"Tickler{INJECTION} <tickler@example.com>",
        to=(f"Ada{INJECTION} <ada@example.com>",),
        headers=(("X-Tickler-Identity", f"form-sd{INJECTION}"),),
    )

    result = await transport.send(msg, date=DATE)

    assert result.status is DeliveryStatus.SENT
    [received] = server.recorder.received
    assert received.rcpt_tos == ["ada@example.com"]
    assert not re.search(rb"(?im)^bcc:", received.content)
    got = parse(received.content)
    assert got.get_all("Bcc") is None
    assert got["Subject"] == "Form SD Bcc: evil@example.com"
    assert got["From"].addresses[0].display_name == "Tickler Bcc: evil@example.com"


@pytest.mark.parametrize(
    ("smtputf8", "status"), [(False, DeliveryStatus.PERMANENT), (True, DeliveryStatus.SENT)]
)
async def test_a_non_ascii_recipient_needs_a_server_with_smtputf8(
    start_server: StartServer, smtputf8: bool, status: DeliveryStatus
) -> None:
    server = start_server(enable_SMTPUTF8=smtputf8)
    smtp = server.transport()

    result = await smtp.send(message(to=("zoe@exämple.com",)), date=DATE)
    await smtp.close()

    assert result.status is status
    if smtputf8:
        assert server.recorder.received[0].rcpt_tos == ["zoe@exämple.com"]
    else:
        assert "SMTPUTF8" in result.detail
        assert server.recorder.received == []


async def test_invalid_message_is_permanent_without_contacting_the_server(
    server: Server, transport: SmtpTransport
) -> None:
    result = await transport.send(
        message(to=("Ada <ada@example.com>\r\nRCPT TO:<x@y>",)), date=DATE
    )

    assert (result.status, result.code) == (DeliveryStatus.PERMANENT, None)
    assert result.detail.startswith("invalid message")
    assert server.recorder.connections == 0


@pytest.mark.parametrize(("mechanism", "excluded"), [("PLAIN", "LOGIN"), ("LOGIN", "PLAIN")])
async def test_starttls_and_auth(
    start_server: StartServer, certificate: Certificate, mechanism: str, excluded: str
) -> None:
    authenticator = Authenticator(login=b"tickler", password=b"s3cret")
    server = tls_server(
        start_server,
        certificate,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=True,
        auth_exclude_mechanism=[excluded],
    )
    smtp = server.transport(
        security="starttls",
        username="tickler",
        password="s3cret",
        tls_context=certificate.client_context(),
    )

    result = await smtp.send(message(), date=DATE)
    await smtp.close()

    assert result.status is DeliveryStatus.SENT, result
    assert authenticator.used == [mechanism]
    assert server.recorder.received[0].over_tls


@pytest.mark.parametrize(
    ("credentials", "code"),
    [({"username": "tickler", "password": "wrong"}, 535), ({}, 530)],
    ids=["wrong-password", "no-credentials"],
)
async def test_credential_problems_are_temporary_not_permanent(
    start_server: StartServer, certificate: Certificate, credentials: dict[str, str], code: int
) -> None:
    # A relay misconfiguration must not mark every pending message as failed for good.
    server = tls_server(
        start_server,
        certificate,
        authenticator=Authenticator(login=b"tickler", password=b"s3cret"),
        auth_required=True,
    )
    smtp = server.transport(
        security="starttls", tls_context=certificate.client_context(), **credentials
    )

    result = await smtp.send(message(), date=DATE)
    await smtp.close()

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, code)
    assert server.recorder.received == []


async def test_untrusted_certificate_is_temporary(
    start_server: StartServer, certificate: Certificate
) -> None:
    server = tls_server(start_server, certificate)
    smtp = server.transport(security="starttls")  # system trust store: self-signed fails

    result = await smtp.send(message(), date=DATE)
    await smtp.close()

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, None)
    assert "certificate" in result.detail.lower()
    assert server.recorder.received == []


async def test_starttls_required_but_not_offered_is_temporary(server: Server) -> None:
    smtp = server.transport(security="starttls")

    result = await smtp.send(message(), date=DATE)
    await smtp.close()

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, None)
    assert "STARTTLS" in result.detail
    assert server.recorder.received == []


async def test_concurrent_sends_share_the_pool(server: Server) -> None:
    smtp = server.transport(connections=4)

    results = await asyncio.gather(*(smtp.send(message(n), date=DATE) for n in range(50)))
    await smtp.close()

    assert {r.status for r in results} == {DeliveryStatus.SENT}
    ids = {parse(r.content)["Message-ID"] for r in server.recorder.received}
    assert ids == {f"<cm-2027.{n:04d}@tickler>" for n in range(50)}
    assert server.recorder.connections == 4
    assert server.recorder.max_open <= 4


async def test_sequential_sends_reuse_one_connection(
    server: Server, transport: SmtpTransport
) -> None:
    for n in range(5):
        assert (await transport.send(message(n), date=DATE)).status is DeliveryStatus.SENT

    assert server.recorder.connections == 1


async def test_connection_timed_out_by_the_server_is_replaced(start_server: StartServer) -> None:
    server = start_server(timeout=0.2)  # aiosmtpd hangs up after 0.2 s of silence
    smtp = server.transport()

    first = await smtp.send(message(1), date=DATE)
    await eventually(lambda: not server.recorder.open_sessions)
    second = await smtp.send(message(2), date=DATE)
    await smtp.close()

    assert (first.status, second.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)
    assert len(server.recorder.received) == 2
    assert server.recorder.connections == 2


async def test_dead_connection_found_on_use_is_retried_once_before_data(
    server: Server, transport: SmtpTransport
) -> None:
    await transport.send(message(1), date=DATE)
    server.drop_connections()  # the client only finds out when it sends MAIL FROM

    result = await transport.send(message(2), date=DATE)

    assert result.status is DeliveryStatus.SENT
    ids = [parse(r.content)["Message-ID"] for r in server.recorder.received]
    assert ids == ["<cm-2027.0001@tickler>", "<cm-2027.0002@tickler>"]
    assert server.recorder.connections == 2


async def test_421_on_a_reused_connection_is_retried_on_a_fresh_one(
    server: Server, transport: SmtpTransport
) -> None:
    await transport.send(message(1), date=DATE)
    server.recorder.next_mail_reply = "421 4.4.2 mx.test Error: timeout exceeded"

    result = await transport.send(message(2), date=DATE)

    assert result.status is DeliveryStatus.SENT
    assert len(server.recorder.received) == 2
    assert server.recorder.connections == 2


async def test_421_on_a_fresh_connection_is_temporary(
    server: Server, transport: SmtpTransport
) -> None:
    server.recorder.next_mail_reply = "421 4.3.2 mx.test shutting down"

    result = await transport.send(message(), date=DATE)

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, 421)
    assert server.recorder.received == []


async def test_hang_up_after_the_body_is_temporary_and_not_resent(
    server: Server, transport: SmtpTransport
) -> None:
    server.recorder.hang_up_in_data = True

    result = await transport.send(message(), date=DATE)

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, None)
    # The server has the message: a resend here would be a duplicate. The outbox decides.
    assert len(server.recorder.received) == 1
    assert server.recorder.connections == 1


async def test_close_quits_idle_connections_and_refuses_new_sends(server: Server) -> None:
    smtp = server.transport()
    await smtp.send(message(), date=DATE)

    await smtp.close()

    await eventually(lambda: not server.recorder.open_sessions)
    with pytest.raises(RuntimeError, match="closed"):
        await smtp.send(message(), date=DATE)


# Maildir --------------------------------------------------------------------------------


async def test_maildir_writes_a_parseable_message(tmp_path: Path) -> None:
    maildir = MaildirTransport(tmp_path / "mail")

    result = await maildir.send(message(calendar=CALENDAR), date=DATE)
    await maildir.close()

    assert result.status is DeliveryStatus.SENT
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    [key] = box.keys()
    assert key == result.detail
    data = box.get_bytes(key)
    assert b"\r\n" not in data
    got = parse(data)
    assert got["Message-ID"] == "<cm-2027.0000@tickler>"
    assert set(parts(got)) == {"text/plain", "text/html", "text/calendar"}


async def test_maildir_that_cannot_be_created_is_temporary(tmp_path: Path) -> None:
    # A regular file where a directory should be: fails for root too, unlike chmod.
    (tmp_path / "not-a-dir").write_text("")
    maildir = MaildirTransport(tmp_path / "not-a-dir" / "mail")

    result = await maildir.send(message(), date=DATE)

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, None)
    assert "not-a-dir" in result.detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
async def test_read_only_maildir_is_temporary(tmp_path: Path) -> None:
    mailbox.Maildir(tmp_path / "mail", create=True)
    folders = [tmp_path / "mail" / name for name in ("", "tmp", "new", "cur")]
    for folder in folders:
        folder.chmod(0o500)
    try:
        result = await MaildirTransport(tmp_path / "mail").send(message(), date=DATE)
    finally:
        for folder in folders:
            folder.chmod(0o700)

    assert (result.status, result.code) == (DeliveryStatus.TEMPORARY, None)
    assert "Permission denied" in result.detail
