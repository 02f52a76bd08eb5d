"""``tickler healthcheck`` against a real ``tickler run``, where the settings say it listens.

The image's old probe read only ``TICKLER_HTTP_PORT`` and asked 127.0.0.1, so a server on the
port of ``TICKLER_HTTP_PORT_FILE`` or on a non-loopback ``TICKLER_HTTP_HOST`` was "unhealthy"
while it served. Here the daemon runs with both (and a wrong ``TICKLER_HTTP_PORT`` that the
file overrides); the health check must find it, and must fail once it has stopped.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scheduler.cli.health import probe_host

TICKLER = Path(sys.executable).parent / "tickler"


@pytest.mark.parametrize(
    ("host", "probed"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("", "127.0.0.1"),
        ("::", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("fd00::5", "[fd00::5]"),
        ("tickler.internal", "tickler.internal"),
    ],
)
def test_the_probe_asks_where_the_server_binds(host: str, probed: str) -> None:
    assert probe_host(host) == probed


def non_loopback_address() -> str:
    """Return an address of this machine off loopback, or 127.0.0.2 where there is none.

    Either way the server is not on 127.0.0.1, where the old probe asked.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # UDP: picks the outgoing interface, sends nothing
            address = str(sock.getsockname()[0])
        except OSError:
            address = ""
    if address and not ipaddress.ip_address(address).is_loopback:
        return address
    return "127.0.0.2"


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKLER_")}
    return env | {
        "TICKLER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'tickler.sqlite'}",
        "TICKLER_MAILDIR": str(tmp_path / "data" / "maildir"),
        "TICKLER_LOG_FORMAT": "json",
    }


def healthcheck(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TICKLER), "healthcheck", "--timeout", "2"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.slow
def test_healthy_on_the_port_file_and_a_non_loopback_host(tmp_path: Path) -> None:
    host = non_loopback_address()
    port = free_port(host)
    port_file = tmp_path / "http_port"
    port_file.write_text(f"{port}\n", encoding="utf-8")  # as a mounted secret or config file
    env = clean_env(tmp_path) | {
        "TICKLER_HTTP_HOST": host,
        "TICKLER_HTTP_PORT": str(free_port("127.0.0.1")),  # wrong: the file wins
        "TICKLER_HTTP_PORT_FILE": str(port_file),
    }
    log_path = tmp_path / "tickler.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(TICKLER), "run"], env=env, cwd=tmp_path, stdout=log, stderr=log, text=True
        )
        try:
            url = f"http://{host}:{port}/healthz"
            deadline = time.monotonic() + 30
            while not answers(url):
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, f"no answer on {url}"
                time.sleep(0.2)
            # The probe the image used to run asks 127.0.0.1 on TICKLER_HTTP_PORT: nobody there.
            assert not answers(f"http://127.0.0.1:{env['TICKLER_HTTP_PORT']}/healthz")

            done = healthcheck(env, tmp_path)
            assert done.returncode == 0, done.stderr
            assert url in done.stdout
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=15)
    assert code == 0, log_path.read_text()

    done = healthcheck(env, tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"unhealthy: {url}: "), done.stderr


# Run the health check in-process, then report which modules of the server stack it imported.
PROBE = """
import json, sys
from scheduler.cli.main import cli
try:
    cli.main(["healthcheck", "--timeout", "1"], prog_name="tickler")
    code = 0
except SystemExit as exc:
    code = exc.code
stack = ("sqlalchemy", "uvicorn", "starlette", "apscheduler", "jinja2", "jobs", "scheduler.web",
         "scheduler.daemon")
loaded = sorted(s for s in stack if any(m == s or m.startswith(s + ".") for m in sys.modules))
print(json.dumps({"code": code, "loaded": loaded}))
"""


def test_the_health_check_starts_without_the_server_stack(tmp_path: Path) -> None:
    # It runs every 30 s in every container: two seconds of server imports each time would
    # be paid for nothing. Nobody listens here, so the answer is "unhealthy", exit 1.
    env = clean_env(tmp_path) | {"TICKLER_HTTP_PORT": str(free_port("127.0.0.1"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 1, "loaded": []}
    assert "unhealthy: http://127.0.0.1:" in done.stderr
