"""Hostile or unlucky requests over a real socket (issue 10): absurd If-Modified-Since values,
a database outage, trailing-slash redirects, /metrics behind a token or a listener of its own.

Each gets a 4xx, a 304 or a 503 with a problem+json body, never a 500 or a traceback.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from jobs.storage import tokens
from jobs.storage.db import begin_write, sqlite_path
from scheduler.daemon.service import Service
from scheduler.web.http import RETRY_AFTER_SECONDS, create_app, metrics_app
from tests.daemon_support import child_env, daemon_command, log_records, wait_while_running
from tests.world import HR_TOKEN, OPEN_WEEK, FakeClock, live_server, seeded, service

PUBLIC = "/feeds/public/program:fcpa:representatives.ics"
PAT = "person:employee:E1001"
HR = {"Authorization": f"Bearer {HR_TOKEN.partition(':')[2]}"}
METRICS_TOKEN = "metrics-secret-0123456789"


def issue(svc: Service, feed: str) -> str:
    with begin_write(svc.factory) as session:
        return tokens.issue(session, feed, OPEN_WEEK)


@contextmanager
def client_for(svc: Service, app: Any | None = None) -> Iterator[httpx.Client]:
    app = app if app is not None else create_app(svc, clock=FakeClock(OPEN_WEEK))
    with live_server(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


# If-Modified-Since ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "status"),
    [
        # Not valid HTTP-dates: ignored (RFC 9110 13.1.3), so the full response.
        ("Sat, 01 Jan 99999 00:00:00 GMT", 200),
        ("Sat, 01 Jan 99999999999999999999 00:00:00 GMT", 200),  # was an OverflowError: 500
        ("Sat, 01 Jan 2003 00:00:99999999999999999999 GMT", 200),  # the same, in the seconds
        ("Fri, 31 Dec 9999 23:59:59 -2359", 200),  # not GMT
        ("Sat, 01 Jan -1 00:00:00 GMT", 200),
        ("-1", 200),
        ("garbage", 200),
        ("", 200),
        ("Sat, 01 Jan 2003 99:99:99 GMT", 200),
        # Valid: later than the feed's last change, so not modified.
        ("Fri, 31 Dec 9999 23:59:59 GMT", 304),
    ],
)
def test_if_modified_since_absurd_values_get_200_or_304_never_500(
    db_url: str, tmp_path: Path, since: str, status: int
) -> None:
    svc = seeded(service(db_url, tmp_path))
    try:
        with client_for(svc) as client:
            for url in (PUBLIC, f"/feeds/{issue(svc, PAT)}.ics"):
                full = client.get(url)
                assert full.status_code == 200
                answer = client.get(url, headers={"If-Modified-Since": since})
                assert answer.status_code == status, answer.text
                assert answer.content == (full.content if status == 200 else b"")
                # The feed's own Last-Modified still revalidates.
                modified = {"If-Modified-Since": full.headers["last-modified"]}
                assert client.get(url, headers=modified).status_code == 304
    finally:
        svc.engine.dispose()


# A database outage ---------------------------------------------------------------------------


class TcpProxy:
    """A TCP relay to ``target`` on a fixed local port that can be cut and restored.

    Cutting it closes the listener and every relayed connection, as a database server that
    went away would: connections in the pool break, new ones are refused.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.close()
            for conn in self._open:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class Outage:
    """Takes the database away from a running service and brings it back."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.path = sqlite_path(db_url)
        self.proxy: TcpProxy | None = None
        self.url = db_url
        self.aside = tmp_path / "aside"
        if self.path is None:
            url = make_url(db_url)
            self.proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
            self.proxy.start()
            self.url = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(False)

    def begin(self, svc: Service) -> None:
        svc.engine.dispose()  # pooled SQLite connections would keep the file open
        if self.proxy is not None:
            self.proxy.cut()
            return
        assert self.path is not None
        self.aside.mkdir()
        for suffix in ("", "-wal", "-shm"):
            if Path(self.path + suffix).exists():
                shutil.move(self.path + suffix, self.aside)
        Path(self.path).mkdir()  # where the file was: SQLite cannot open a directory

    def end(self, svc: Service) -> None:
        svc.engine.dispose()
        if self.proxy is not None:
            self.proxy.start()
            return
        assert self.path is not None
        Path(self.path).rmdir()
        for moved in self.aside.iterdir():
            shutil.move(moved, Path(self.path).parent)


def test_a_database_outage_is_503_problem_json_and_one_log_line_never_a_traceback(
    db_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    outage = Outage(db_url, tmp_path)
    svc = seeded(service(outage.url, tmp_path))
    token = issue(svc, PAT)
    ack = {"program": "fcpa", "person": "employee:E1001"}
    try:
        with client_for(svc) as client:
            assert client.get(PUBLIC).status_code == 200
            outage.begin(svc)
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                answers = [
                    client.get(PUBLIC),
                    client.get(f"/feeds/{token}.ics"),
                    client.head(PUBLIC),
                    client.post("/api/v1/acknowledgments", json=ack, headers=HR),
                ]
                ready = client.get("/readyz")
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
                if answer.request.method != "HEAD":
                    assert answer.headers["content-type"] == "application/problem+json"
                    assert answer.json() == {
                        "type": "about:blank",
                        "title": "Service Unavailable",
                        "status": 503,
                        "detail": "the database is unavailable; try again shortly",
                    }
            assert ready.status_code == 503
            assert ready.json()["database"].startswith("unreachable")
            lines = [r for r in caplog.records if getattr(r, "action", None)]
            assert [r.__dict__["action"] for r in lines] == ["http_database_unavailable"] * 4
            assert [r.__dict__["route"] for r in lines] == [
                "/feeds/public/{name}.ics",
                "/feeds/{token}.ics",  # the pattern: the token itself is never logged
                "/feeds/public/{name}.ics",
                "/api/v1/acknowledgments",
            ]
            assert all(r.exc_info is None for r in caplog.records)
            assert token not in caplog.text

            outage.end(svc)
            assert client.get(PUBLIC).status_code == 200
            assert client.get(f"/feeds/{token}.ics").status_code == 200
            recorded = client.post("/api/v1/acknowledgments", json=ack, headers=HR)
            assert recorded.status_code == 201, recorded.text
    finally:
        svc.engine.dispose()
        if outage.proxy is not None:
            outage.proxy.cut()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in ASGI application" not in err


# Redirects -----------------------------------------------------------------------------------


def test_trailing_slash_redirects_go_to_the_public_url_and_never_carry_a_feed_token(
    db_url: str, tmp_path: Path
) -> None:
    public_url = "https://calendar.example.com/tickler"
    svc = seeded(service(db_url, tmp_path, public_url=public_url))
    token = issue(svc, PAT)
    evil = {"Host": "evil.example"}
    try:
        with client_for(svc) as client:
            health = client.get("/healthz/", headers=evil)
            assert (health.status_code, health.headers["location"]) == (
                308,
                f"{public_url}/healthz",
            )
            feed = client.get(f"{PUBLIC}/?x=1", headers=evil)
            assert feed.headers["location"] == f"{public_url}{PUBLIC}?x=1"
            private = client.get(f"/feeds/{token}.ics/", headers=evil)
            nothing = client.get("/nothing/", headers=evil)
            assert private.status_code == nothing.status_code == 404
            assert "location" not in private.headers
            assert private.content == nothing.content and token not in private.text
            assert client.get(f"/feeds/{token}.ics").status_code == 200
    finally:
        svc.engine.dispose()


# /metrics ------------------------------------------------------------------------------------


def test_metrics_behind_a_bearer_token(db_url: str, tmp_path: Path) -> None:
    svc = seeded(service(db_url, tmp_path, metrics_token=METRICS_TOKEN))
    try:
        with client_for(svc) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}, HR):
                refused = client.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused.headers["www-authenticate"].startswith("Bearer")
            good = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert good.status_code == 200
            assert "tickler_database_up 1.0" in good.text
            assert client.get("/healthz").status_code == 200  # probes need no token
    finally:
        svc.engine.dispose()


def test_metrics_on_a_listener_of_its_own(db_url: str, tmp_path: Path) -> None:
    svc = seeded(service(db_url, tmp_path, metrics_port=0))
    app = create_app(svc, clock=FakeClock(OPEN_WEEK))
    try:
        with client_for(svc, app) as public, client_for(svc, metrics_app(app)) as internal:
            assert public.get("/metrics").status_code == 404
            assert public.get(PUBLIC).status_code == 200
            scraped = internal.get("/metrics")
            assert scraped.status_code == 200
            # One registry: the public listener's requests are counted on the other.
            assert re.search(
                r'^tickler_feed_requests_total\{[^}]*kind="program"[^}]*\} 1\.0$',
                scraped.text,
                re.M,
            )
            assert internal.get("/healthz").status_code == 200
            assert internal.get(PUBLIC).status_code == 404
    finally:
        svc.engine.dispose()


@pytest.mark.slow
def test_tickler_run_serves_metrics_on_its_own_listener_behind_its_token(tmp_path: Path) -> None:
    env = child_env() | {
        "TICKLER_DATABASE_URL": f"sqlite:///{tmp_path / 'tickler.db'}",
        "TICKLER_MAILDIR": str(tmp_path / "maildir"),
        "TICKLER_HTTP_PORT": "0",
        "TICKLER_METRICS_PORT": "0",
        "TICKLER_METRICS_TOKEN": METRICS_TOKEN,
        "TICKLER_LOG_FORMAT": "json",
    }
    log = tmp_path / "daemon.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            daemon_command(OPEN_WEEK),
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        ports: dict[str, int] = {}

        def listening() -> bool:
            for r in log_records(log):
                if r.get("action") == "http_listening":
                    ports[str(r["listener"])] = int(str(r["port"]))
            return len(ports) == 2

        wait_while_running(process, listening, log, "both listeners", timeout=30)
        token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        with httpx.Client(timeout=10) as client:
            public = f"http://127.0.0.1:{ports['http']}"
            internal = f"http://127.0.0.1:{ports['metrics']}"

            def ready() -> bool:  # migrated: until then the database's figures are left out
                return client.get(f"{public}/readyz").status_code == 200

            wait_while_running(process, ready, log, "ready", timeout=30)
            assert client.get(f"{public}/metrics", headers=token).status_code == 404
            assert client.get(f"{internal}/metrics").status_code == 401
            scraped = client.get(f"{internal}/metrics", headers=token)
            assert scraped.status_code == 200 and "tickler_database_up 1.0" in scraped.text
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text()
