"""Replicas starting together on an empty database: each runs the migrations, none fails."""

from __future__ import annotations

import threading

from jobs.storage.db import current_revision, upgrade

REPLICAS = 4


def test_concurrent_upgrades_all_succeed(empty_db_url: str) -> None:
    # Without the migration lock all but one failed on PostgreSQL (duplicate pg_type row) and
    # on SQLite ("database is locked" on a deferred transaction's first write).
    barrier = threading.Barrier(REPLICAS)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            upgrade(empty_db_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(REPLICAS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert current_revision(empty_db_url) is not None
