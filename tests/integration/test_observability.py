"""What an operator sees of a delivery run: ``/metrics`` scraped over a socket while it goes,
parsed with prometheus_client's own parser, and one log line per message.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from jobs.storage.db import OutboxMessage, OutboxState, SupplierTier
from scheduler.web.http import create_app
from tests.daemon_support import (
    PROGRAM,
    REPO,
    WAVE_1,
    Database,
    Scrape,
    database,
    http_port,
    kill_all,
    log_records,
    read_metrics,
    start_daemon,
    stop_all,
    wait_while_running,
)
from tests.smtp_sink import Recorder, sinks
from tests.world import OPEN_WEEK, PROGRAMS, FakeClock, seeded, service

NOW = WAVE_1 + timedelta(minutes=30)  # the daemon's clock at start: wave 1 is 30 minutes late
SUPPLIERS = 600
GONE, BUSY = "s00000@example.com", "s00001@example.com"  # refused for good; once, then accepted


@pytest.fixture
def program_dir(tmp_path: Path) -> Path:
    """Only ``conflict-minerals-2016``: its wave-1 requests are the work."""
    directory = tmp_path / "programs"
    directory.mkdir()
    shutil.copy(REPO / "config" / "defaults" / f"{PROGRAM}.toml", directory)
    return directory


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    with database(f"sqlite:///{tmp_path / 'tickler.db'}") as made:
        yield made


def sent(scrape: Scrape) -> float:
    return sum(s.value for s in scrape.samples("tickler_messages_total", outcome="sent"))


@pytest.mark.slow
def test_metrics_move_during_a_delivery_run_and_every_message_has_its_log_line(
    sqlite_db: Database, tmp_path: Path, program_dir: Path
) -> None:
    """A daemon sends a wave of 600 CMRT requests to aiosmtpd; one recipient is refused
    (550), one is told to try later once (451). /metrics, scraped again and again over the
    socket while the wave goes, shows the counters moving and never going back; at the end
    every series agrees with the database, and the log has one line per outcome."""
    db = sqlite_db
    db.add_suppliers(SUPPLIERS, SupplierTier.DIRECT)
    recorder = Recorder(keep_content=False)
    recorder.rcpt_replies[GONE] = f"550 5.1.1 <{GONE}>: no such user"
    recorder.rcpt_faults[BUSY] = ["451 4.3.0 try later"]
    log = tmp_path / "daemon.log"
    scrapes: list[Scrape] = []
    with sinks() as started:
        server = started.start(recorder)
        daemon = start_daemon(
            db, server.port, NOW, log, program_dir=program_dir, retry_backoff_seconds=0.2
        )
        try:
            port = http_port(daemon, log)

            def done() -> bool:
                scrapes.append(read_metrics(port))
                return sent(scrapes[-1]) >= SUPPLIERS - 1

            wait_while_running(daemon, done, log, "the wave sent", timeout=120)
            final = read_metrics(port)
            stop_all([(daemon, log)])
        finally:
            kill_all([(daemon, log)])

    # Moving: counters never go back, and some scrape saw the wave half done.
    counts = [sent(s) for s in scrapes]
    print(f"\n{len(scrapes)} scrapes; messages sent in each: {[int(n) for n in counts]}")
    assert counts == sorted(counts), counts
    assert any(0 < n < SUPPLIERS - 1 for n in counts), f"no scrape during the wave: {counts}"

    rows = db.messages(OutboxMessage.job == "cmrt_request")
    by_state = Counter(m.state for m in rows)
    assert by_state == {OutboxState.SENT: SUPPLIERS - 1, OutboxState.FAILED: 1}
    request = {"program": PROGRAM, "kind": "cmrt_request"}
    assert final.value("tickler_messages_total", **request, outcome="sent") == SUPPLIERS - 1
    assert final.value("tickler_messages_total", **request, outcome="failed") == 1
    assert final.value("tickler_messages_total", **request, outcome="retried") == 1
    # Lateness: the daemon's clock started 30 minutes after the due time.
    assert final.value("tickler_send_lateness_seconds_count", program=PROGRAM) == SUPPLIERS - 1
    assert final.value("tickler_send_lateness_seconds_bucket", program=PROGRAM, le="900.0") == 0
    assert (
        final.value("tickler_send_lateness_seconds_bucket", program=PROGRAM, le="3600.0")
        == SUPPLIERS - 1
    )
    assert final.value("tickler_plan_duration_seconds_count") >= 1
    assert final.value("tickler_tick_duration_seconds_count") >= 1
    assert final.value("tickler_scheduler_running") == 1
    assert final.value("tickler_planning_failures_total") == 0
    # The database's figures: the same whichever replica answers, so no owner label.
    assert final.value("tickler_database_up") == 1
    assert final.value("tickler_outbox_messages", state="sent") == SUPPLIERS - 1
    assert final.value("tickler_outbox_messages", state="failed") == 1
    assert final.value("tickler_obligations_pending", program=PROGRAM) == SUPPLIERS
    assert final.value("tickler_obligations_overdue", program=PROGRAM) == 0
    assert "owner" not in final.samples("tickler_outbox_due_backlog")[0].labels
    # The replica's own series, standard ones included, carry its name.
    (started_line,) = [r for r in log_records(log) if r.get("action") == "started"]
    owner = str(started_line["owner"])
    (build,) = final.samples("tickler_build_info")
    assert build.labels["owner"] == owner and build.labels["version"]
    assert final.value("process_cpu_seconds_total", owner=owner) > 0
    assert final.value("python_gc_collections_total", owner=owner) > 0

    # One log line per outcome, with the recipient's domain only.
    outcomes = [r for r in log_records(log) if str(r.get("action", "")).startswith("message_")]
    # The weekly digest had nothing to report: skipped, and said so.
    assert [r["action"] for r in outcomes if r["job"] == "digest"] == ["message_skipped"]
    lines = [r for r in outcomes if r["job"] == "cmrt_request"]
    sent_lines = Counter(str(r["message_id"]) for r in lines if r["action"] == "message_sent")
    assert sent_lines == Counter(m.message_id for m in rows if m.state == OutboxState.SENT)
    assert all("recipient" not in r and r["recipient_domain"] == "example.com" for r in lines)
    assert all(r["owner"] == owner and r["program"] == PROGRAM for r in lines)
    (failed,) = [r for r in lines if r["action"] == "message_failed"]
    assert (failed["level"], failed["code"], failed["job"]) == ("ERROR", 550, "cmrt_request")
    assert GONE not in str(failed) and "…@example.com" in str(failed["detail"])
    (retried,) = [r for r in lines if r["action"] == "message_retried"]
    assert (retried["level"], retried["code"], retried["attempt"]) == ("WARNING", 451, 1)
    busy = db.messages(OutboxMessage.recipient == BUSY)[0]
    assert retried["identity"] == busy.identity and retried["message_id"] == busy.message_id
    assert all(
        r["code"] == 250 and float(str(r["lateness_seconds"])) >= 1800
        for r in lines
        if r["action"] == "message_sent"
    )


async def test_openmetrics_on_request_and_two_apps_in_one_process_do_not_collide(
    db_url: str, tmp_path: Path
) -> None:
    """Each app has a registry of its own (tests, or two services in a process, never share
    prometheus_client's global one); a scraper that asks for OpenMetrics gets it."""
    first, second = seeded(service(db_url, tmp_path)), service(db_url, tmp_path)
    try:
        apps = [create_app(s, clock=FakeClock(OPEN_WEEK)) for s in (first, second)]
        owners = []
        for app in apps:
            async with _client(app) as client:
                page = await client.get("/metrics")
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/plain; version=")
                scrape = Scrape.parse(page.text)
                (build,) = scrape.samples("tickler_build_info")
                owners.append(build.labels["owner"])
                assert scrape.value("tickler_database_up") == 1
                opened = await client.get(
                    "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
                )
                assert opened.headers["content-type"].startswith("application/openmetrics-text")
                parsed = openmetrics_families(opened.text)  # type: ignore[no-untyped-call]
                names = {f.name for f in parsed}
                assert {"tickler_messages", "tickler_obligations_pending"} <= names
        assert len(set(owners)) == 2
    finally:
        first.engine.dispose()
        second.engine.dispose()


async def test_cancelled_messages_are_counted_by_program_and_kind(
    db_url: str, tmp_path: Path
) -> None:
    """A supplier answers before its follow-ups are due: planning cancels them, and the
    counter of cancelled messages says which program and kind they were."""
    programs = [p for p in PROGRAMS if p.id == PROGRAM]
    svc = service(db_url, tmp_path, programs)
    try:
        with database(db_url) as db:
            [answers, _] = db.add_suppliers(2, SupplierTier.DIRECT)
            await svc.plan(NOW)
            db.record_response(answers, NOW, programs)
            report = await svc.plan(NOW + timedelta(minutes=1))
        scrape = Scrape.parse(generate_latest(svc.metrics.registry).decode())
        cancelled = {
            s.labels["kind"]: s.value
            for s in scrape.samples("tickler_messages_total", outcome="cancelled")
        }
        assert report.cancelled > 0
        assert cancelled == {k: n for (_, k), n in report.cancelled_by.items()}
        assert cancelled.keys() >= {"cmrt_follow_up", "cmrt_escalation"}
        assert {p for p, _ in report.cancelled_by} == {PROGRAM}
        assert scrape.value("tickler_plan_duration_seconds_count") == 2
    finally:
        svc.engine.dispose()


async def test_metrics_still_answer_when_the_database_is_down(tmp_path: Path) -> None:
    broken = service(f"sqlite:///{tmp_path}", tmp_path)  # a directory is no database
    try:
        async with _client(create_app(broken)) as client:
            page = await client.get("/metrics")
        assert page.status_code == 200
        scrape = Scrape.parse(page.text)
        assert scrape.value("tickler_database_up") == 0
        assert not scrape.samples("tickler_outbox_messages")  # a gap, not a false zero
        assert scrape.value("process_cpu_seconds_total") > 0
    finally:
        broken.engine.dispose()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tickler")
