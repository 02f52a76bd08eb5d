"""A real SMTP server for tests and benchmarks: aiosmtpd with recording and fault injection.

In a test, ``Sinks().start()`` runs the server on a thread of the test's process, on a port the
OS picks, and ``Recorder`` keeps what arrives and answers as the test tells it to: a fixed
reply for a recipient (``rcpt_replies``: "550 5.1.1 no such user"), replies for a recipient's
next attempts only (``rcpt_faults``: "451 4.3.0 try later" once, then accepted), a reply to
every DATA, a hang-up after the body.

As a separate process, so that it outlives a daemon killed with SIGKILL::

    python -m tests.smtp_sink [--port P] [--log FILE]

prints the port it listens on (one line, ``--port 0`` being "any free port"), appends the
Message-ID of each accepted message to FILE (one line each, flushed at once), and stops on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from jobs.mail.transport import SmtpTransport

LOCAL_HOSTNAME = "tickler.test"  # skips aiosmtplib's getfqdn() lookup on every connection
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.IGNORECASE | re.MULTILINE)


def message_id(content: bytes) -> str | None:
    """Return the Message-ID (without angle brackets) in the header of ``content``."""
    head = content.split(b"\r\n\r\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else None


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    over_tls: bool


@dataclass
class Recorder:
    """aiosmtpd handler: keeps what arrives and answers as the test tells it to.

    Its hooks run on the server's thread; tests read it after their sends returned (or poll).
    ``rcpt_replies`` answers a recipient the same way every time; ``rcpt_faults`` holds the
    replies for a recipient's next RCPT commands, used up one per attempt, after which the
    recipient is accepted. ``log``, when set, gets one line per accepted message: its
    Message-ID, flushed at once so that another process can count deliveries.
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    rcpt_faults: dict[str, list[str]] = field(default_factory=dict)
    data_reply: str | None = None
    next_mail_reply: str | None = None  # answered to the next MAIL FROM only
    hang_up_in_data: bool = False
    keep_content: bool = True
    log: TextIO | None = None
    received: list[Received] = field(default_factory=list)
    message_ids: Counter[str] = field(default_factory=Counter)
    rcpt_attempts: Counter[str] = field(default_factory=Counter)
    open_sessions: set[SMTP] = field(default_factory=set)
    connections: int = 0
    max_open: int = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        # Counted at EHLO, not at accept: aiosmtpd's own readiness probe never says EHLO,
        # and a set absorbs the second EHLO after STARTTLS.
        if server not in self.open_sessions:
            self.open_sessions.add(server)
            self.connections += 1
            self.max_open = max(self.max_open, len(self.open_sessions))
        return responses

    def connection_closed(self, server: SMTP) -> None:
        self.open_sessions.discard(server)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply, self.next_mail_reply = self.next_mail_reply, None
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_attempts[address] += 1
        reply = self.rcpt_replies.get(address)
        if reply is None and self.rcpt_faults.get(address):
            reply = self.rcpt_faults[address].pop(0)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert envelope.mail_from is not None
        assert envelope.original_content is not None
        content = envelope.original_content
        if self.keep_content:
            self.received.append(
                Received(
                    mail_from=envelope.mail_from,
                    rcpt_tos=list(envelope.rcpt_tos),
                    content=content,
                    over_tls=session.ssl is not None,
                )
            )
        mid = message_id(content) or "-"
        self.message_ids[mid] += 1
        if self.log is not None:
            # Written before the 250 leaves: a line means "the server has it", which is what
            # the exactly-once accounting of a killed client needs.
            self.log.write(f"{mid}\n")
            self.log.flush()
        if self.hang_up_in_data:
            # The message is in, but the 250 never leaves: the ambiguous window.
            assert server.transport is not None
            server.transport.close()
            await asyncio.sleep(10)  # cancelled by aiosmtpd when the connection is lost
        return "250 2.0.0 Ok: queued"


class _RecordingSMTP(SMTP):
    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.connection_closed(self)
        super().connection_lost(error)


class SinkController(Controller):
    """aiosmtpd's threaded controller on 127.0.0.1, with connection counting.

    ``port=0`` (the default) takes a port the OS picks; ``port`` tells which once started.
    """

    def __init__(self, recorder: Recorder, *, port: int = 0, **smtp_options: Any) -> None:
        super().__init__(
            recorder,
            hostname="127.0.0.1",
            port=port,
            server_hostname="mx.test",
            ready_timeout=10.0,  # a loaded CI machine can take more than aiosmtpd's 1 s
            **smtp_options,
        )

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # aiosmtpd probes self.port to see that the server is up: with port=0 that must be
        # the port the OS actually bound, known only once the server exists.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@dataclass
class Server:
    controller: SinkController
    recorder: Recorder

    @property
    def port(self) -> int:
        port = self.controller.port
        assert isinstance(port, int)
        return port

    def transport(self, **options: Any) -> SmtpTransport:
        """Return an SmtpTransport to this server (plain text unless told otherwise)."""
        options.setdefault("security", "none")
        options.setdefault("local_hostname", LOCAL_HOSTNAME)
        return SmtpTransport(host="127.0.0.1", port=self.port, **options)

    def drop_connections(self) -> None:
        """Close every connection from the server's side, and wait until that is done.

        This blocks the caller's event loop on purpose: the client has no chance to see
        the hang-up before it uses the connection again.
        """

        async def close_all() -> None:
            for smtp in list(self.recorder.open_sessions):
                assert smtp.transport is not None
                smtp.transport.close()
            await asyncio.sleep(0.05)

        asyncio.run_coroutine_threadsafe(close_all(), self.controller.loop).result(timeout=5)


class Sinks:
    """Start servers on threads of this process; ``stop_all`` stops every one (fixtures)."""

    def __init__(self) -> None:
        self._controllers: list[SinkController] = []

    def start(self, recorder: Recorder | None = None, **smtp_options: Any) -> Server:
        recorder = recorder or Recorder()
        controller = SinkController(recorder, **smtp_options)
        controller.start()
        self._controllers.append(controller)
        return Server(controller=controller, recorder=recorder)

    def stop_all(self) -> None:
        while self._controllers:
            self._controllers.pop().stop()


@contextmanager
def sinks() -> Iterator[Sinks]:
    """Yield a ``Sinks`` whose servers are all stopped on the way out."""
    started = Sinks()
    try:
        yield started
    finally:
        started.stop_all()


# The separate process ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.smtp_sink", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--log", type=Path, help="append each accepted Message-ID to this file")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log = args.log.open("a", encoding="ascii") if args.log else None
    # Nothing kept in memory: a benchmark sends tens of thousands of messages.
    recorder = Recorder(keep_content=False, log=log)
    controller = SinkController(recorder, port=args.port)
    controller.start()
    try:
        print(controller.port, flush=True)
        while not stop.wait(0.5):  # a timeout keeps the main thread responsive to signals
            pass
    finally:
        controller.stop()
        if log is not None:
            log.close()
    print(f"accepted {sum(recorder.message_ids.values())} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
