"""The container image: its Dockerfile's essentials, and its install steps run for real.

There is no container engine where the tests run, so the image itself is not built here.
Instead the Dockerfile is read as text (stages, user, health check, signals, no baked-in
secrets) and its builder stage is replayed outside a container: the files it copies are
copied, a wheel is built from them and installed into a fresh venv, and the installed
``tickler`` runs its checks and the daemon. That proves the wheel carries everything the
daemon reads at run time (program files, demo CSVs, templates, migrations).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)


@dataclass(frozen=True, slots=True)
class Instruction:
    name: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Return the instructions of each stage (a new stage at every FROM).

    Follows the Dockerfile rules that matter here: ``\\`` continues a line, and comment lines
    (parser directives included) are dropped, even inside a continued instruction.
    """
    stages: list[list[Instruction]] = []
    preamble: list[Instruction] = []  # ARGs before the first FROM
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        name, _, args = (pending + stripped).partition(" ")
        pending = ""
        instruction = Instruction(name.upper(), args.strip(), start)
        if instruction.name == "FROM":
            stages.append([instruction])
        elif stages:
            stages[-1].append(instruction)
        else:
            preamble.append(instruction)
    assert not pending, "the Dockerfile ends inside a continued line"
    return stages


def env_pairs(instruction: Instruction) -> list[tuple[str, str]]:
    """Return the ``(name, value)`` pairs an ENV or ARG instruction sets."""
    words = shlex.split(instruction.args)
    if instruction.name == "ENV" and words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]  # the legacy ``ENV NAME value`` form
    return [(w.partition("=")[0], w.partition("=")[2]) for w in words]


def last(stage: list[Instruction], name: str) -> Instruction | None:
    found = [i for i in stage if i.name == name]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_the_build_is_multi_stage_and_the_runtime_copies_only_the_venv(
    stages: list[list[Instruction]],
) -> None:
    assert len(stages) >= 2
    runtime = stages[-1]
    copies = [i for i in runtime if i.name in ("COPY", "ADD")]
    assert copies, "the runtime stage copies nothing"
    for copy in copies:
        assert copy.args.startswith("--from="), f"line {copy.line}: copies from the build context"
    bases = {stage[0].args.split()[0] for stage in stages}
    assert len(bases) == 1, "builder and runtime must share a base (the venv links to its python)"


def test_the_base_is_a_slim_official_python_311(stages: list[list[Instruction]]) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert all(stage[0].args.startswith("${PYTHON_IMAGE}") for stage in stages)


def test_the_builder_copies_every_package(stages: list[list[Instruction]]) -> None:
    # A package added to pyproject but not to the Dockerfile would be missing from the image.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {src for copy in builder_copies(stages[0]) for src in copy[0]}
    assert packages | {"pyproject.toml", "README.md", "constraints.txt"} <= copied


def test_the_process_runs_as_a_non_root_user(stages: list[list[Instruction]]) -> None:
    user = last(stages[-1], "USER")
    assert user is not None, "the runtime stage has no USER: it would run as root"
    name = user.args.split(":")[0]
    assert name not in ("root", "0")


def test_the_health_check_is_tickler_healthcheck(stages: list[list[Instruction]]) -> None:
    # Not a python -c with its own idea of the port: `tickler healthcheck` reads the settings
    # as `tickler run` does (TICKLER_HTTP_PORT_FILE, TICKLER_HTTP_HOST); tests/integration/
    # test_healthcheck.py runs it against a real server.
    check = last(stages[-1], "HEALTHCHECK")
    assert check is not None
    options, _, command = check.args.partition("CMD ")
    assert command, "HEALTHCHECK without CMD"
    assert "NONE" not in options.split()
    argv = json.loads(command)  # exec form: no shell needed in the image
    assert argv[:2] == ["/opt/venv/bin/tickler", "healthcheck"]
    timeout = re.search(r"--timeout=(\d+)s", options)
    assert timeout is not None and "--timeout" in argv
    assert float(argv[argv.index("--timeout") + 1]) < int(timeout.group(1))


def test_no_frontend_is_fetched_from_a_registry() -> None:
    # `# syntax=…` makes BuildKit pull a frontend image before building; nothing here needs one.
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)


def test_every_install_is_constrained_and_the_venv_has_no_pip(
    stages: list[list[Instruction]],
) -> None:
    builder, runtime = stages[0], stages[-1]
    runs = " && ".join(i.args for i in builder if i.name == "RUN")
    installs = re.findall(r"pip (?:--python \S+ )?install ([^&]*)", runs)
    assert installs, "the builder installs nothing"
    for arguments in installs:
        assert re.search(r"(--constraint|-c)\s+constraints\.txt", arguments), arguments
    venvs = re.findall(r"-m venv ([^&]*)", runs)
    assert venvs and all("--without-pip" in v for v in venvs), venvs
    # The runtime stage installs nothing itself: it copies the venv.
    assert not any("pip" in i.args for i in runtime if i.name == "RUN")


def test_the_image_test_script_parses_and_takes_the_base() -> None:
    # scripts/image-test needs a Docker engine and is not run here: at least it is valid bash
    # and passes PYTHON_IMAGE to the build as the Dockerfile's ARG.
    script = ROOT / "scripts" / "image-test"
    assert os.access(script, os.X_OK)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert '--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"' in script.read_text(encoding="utf-8")


def test_the_image_test_script_runs_every_check_of_issue_15() -> None:
    # What a Docker engine would be asked, step by step: not run here, so read.
    text = (ROOT / "scripts" / "image-test").read_text(encoding="utf-8")
    for step in (
        '"$engine" build "${build_args[@]}"',  # with PYTHON_IMAGE when given
        "{{.State.Health.Status}}",  # waits for healthy, through the image's HEALTHCHECK
        '"$engine" exec "$id" tickler check',
        '"$engine" exec "$id" tickler import demo',
        '"$engine" stop "$id"',
        "{{.State.ExitCode}}",  # and the stop's exit status must be 0
        '"$engine" start "$id"',  # restarted on the same volume: the data must be there
        "cannot write to /var/lib/tickler as uid 10001",  # a bind mount it cannot write
    ):
        assert step in text, step


def test_the_deploy_doc_says_how_to_build_test_and_mount() -> None:
    # docs/deploy.md, for anyone with a Docker engine: the base from another registry, the
    # image test, who owns a bind-mounted data folder, and Compose v1 beside v2.
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for words in (
        "--build-arg PYTHON_IMAGE=",
        "bash scripts/image-test",
        "chown 10001:10001",
        "Compose v1 (`docker-compose`)",
        "--compatibility",
    ):
        assert words in doc, words


def test_compose_needs_no_v2_only_top_level_name() -> None:
    # A top-level `name:` is refused by Compose v1 (docker-compose); the project name comes
    # from the folder or `-p`.
    compose = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert not re.search(r"^name:", compose, re.M)


def test_the_command_is_tickler_run_in_exec_form(stages: list[list[Instruction]]) -> None:
    # Exec form: tickler is PID 1 and gets SIGTERM itself; a shell form would get it instead.
    cmd = last(stages[-1], "CMD")
    entrypoint = last(stages[-1], "ENTRYPOINT")
    assert cmd is not None
    assert entrypoint is None
    assert json.loads(cmd.args) == ["tickler", "run"]


def test_the_stop_signal_is_sigterm(stages: list[list[Instruction]]) -> None:
    stop = last(stages[-1], "STOPSIGNAL")
    assert stop is None or stop.args in ("SIGTERM", "TERM", "15")


def test_the_state_lives_in_a_volume(stages: list[list[Instruction]]) -> None:
    runtime = stages[-1]
    volume = last(runtime, "VOLUME")
    workdir = last(runtime, "WORKDIR")
    assert volume is not None and workdir is not None
    volumes = json.loads(volume.args) if volume.args.startswith("[") else volume.args.split()
    assert workdir.args in volumes
    env = dict(pair for i in runtime if i.name == "ENV" for pair in env_pairs(i))
    assert env["TICKLER_DATABASE_URL"] == f"sqlite:///{workdir.args}/tickler.sqlite"
    assert env["TICKLER_MAILDIR"].startswith(f"{workdir.args}/")
    assert env["TICKLER_HTTP_HOST"] == "0.0.0.0"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "8080" in (last(runtime, "EXPOSE") or Instruction("EXPOSE", "", 0)).args.split()


def test_no_secret_is_baked_in(stages: list[list[Instruction]]) -> None:
    for stage in stages:
        for instruction in stage:
            if instruction.name not in ("ENV", "ARG"):
                continue
            for name, value in env_pairs(instruction):
                # TICKLER_SMTP_PASSWORD_FILE=/run/secrets/… names a file: that is fine.
                if SECRET_NAME.search(name) and not name.endswith("_FILE"):
                    assert not value, f"line {instruction.line}: {name} has a value in the image"


def test_dockerignore_keeps_the_repository_out() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = {line.strip().strip("/") for line in lines if line.strip()}
    assert {".git", ".venv", "tests", ".env", "var"} <= patterns


def builder_copies(stage: list[Instruction]) -> list[tuple[list[str], str]]:
    """Return the ``(sources, destination)`` of the build-context COPYs of a stage."""
    copies = []
    for instruction in stage:
        if instruction.name == "COPY" and not instruction.args.startswith("--"):
            *sources, destination = instruction.args.split()
            copies.append(([s.rstrip("/") for s in sources], destination))
    return copies


# --- the install steps, for real -------------------------------------------------------------


def replay_builder_copies(destination: Path) -> None:
    """Copy what the builder stage copies, as ``docker build`` would (minus caches)."""
    stages = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, target in builder_copies(stages[0]):
        for source in sources:
            path = ROOT / source
            into = destination / target if target.endswith("/") or target == "./" else None
            dest = (into / path.name) if into is not None else destination / target
            if path.is_dir():
                shutil.copytree(path, dest, ignore=ignore)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*args: str | Path, env: dict[str, str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def logged(text: str, action: str) -> bool:
    """Whether the daemon logged ``action``, as a JSON field or as ``action=…`` text."""
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict) and entry.get("action") == action:
            return True
        if re.search(rf"\baction={re.escape(action)}\b", line):
            return True
    return False


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for(condition: object, what: str, timeout: float, process: subprocess.Popen[str]) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"tickler run exited {process.returncode} before {what}"
        try:
            if condition():
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.mark.slow
def test_the_wheel_installs_and_runs(tmp_path: Path) -> None:
    # The environment of a fresh container: no TICKLER_* from the caller, no venv on the path,
    # nothing cached by pip between runs.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("TICKLER_")
        and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PIP_NO_CACHE_DIR"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    src, wheels, venv, work = (tmp_path / d for d in ("src", "wheels", "venv", "work"))
    work.mkdir()

    # RUN pip wheel --no-deps --wheel-dir /wheels .
    replay_builder_copies(src)
    assert not (src / "tests").exists()
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--wheel-dir",
        wheels,
        src,
        env=env,
        cwd=work,
    )
    (wheel,) = wheels.glob("tickler-*.whl")
    assert_package_data_in(wheel)

    # RUN python -m venv --without-pip /opt/venv
    #     && python -m pip --python /opt/venv/bin/python install --constraint constraints.txt …
    run(sys.executable, "-m", "venv", "--without-pip", venv, env=env, cwd=work)
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "-q",
        "--constraint",
        src / "constraints.txt",
        wheel,
        env=env,
        cwd=work,
        timeout=300,
    )
    assert not list(venv.glob("lib/python*/site-packages/pip")), "pip in the runtime venv"
    assert not list(venv.glob("lib/python*/site-packages/setuptools")), "setuptools in the venv"
    tickler = venv / "bin" / "tickler"
    installed = run(
        venv / "bin" / "python",
        "-c",
        "import scheduler; print(scheduler.__file__)",
        env=env,
        cwd=work,
    )
    assert Path(installed.strip()).is_relative_to(venv), "imported from the source tree"

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    assert version in run(tickler, "--version", env=env, cwd=work)
    checked = run(tickler, "check", env=env, cwd=work)
    assert len([line for line in checked.splitlines() if line.startswith("ok ")]) >= 4

    # The demo data, the migrations and the templates, through a short simulated campaign.
    env_db = env | {
        "TICKLER_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'demo.sqlite'}",
        "TICKLER_MAILDIR": str(tmp_path / "data" / "demo-maildir"),
    }
    assert "database at head" in run(tickler, "db", "upgrade", env=env_db, cwd=work)
    run(tickler, "import", "demo", env=env_db, cwd=work)
    maildir = str(tmp_path / "data" / "demo-maildir")
    run(
        tickler,
        "simulate",
        "--from",
        "2003-01-10",
        "--to",
        "2003-01-21",
        "--maildir",
        maildir,
        env=env_db,
        cwd=work,
    )
    assert list((tmp_path / "data" / "demo-maildir" / "new").iterdir())

    # CMD ["tickler", "run"] on a fresh database: it migrates, serves, and stops on SIGTERM.
    database = tmp_path / "data" / "tickler.sqlite"
    port = free_port()
    env_run = env | {
        "TICKLER_DATABASE_URL": f"sqlite:///{database}",
        "TICKLER_MAILDIR": str(tmp_path / "data" / "maildir"),
        "TICKLER_HTTP_HOST": "127.0.0.1",
        "TICKLER_HTTP_PORT": str(port),
        "TICKLER_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "tickler.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [str(tickler), "run"],
            env=env_run,
            cwd=work,
            stdout=log_file,
            stderr=log_file,
            text=True,
        )
        try:
            healthz = f"http://127.0.0.1:{port}/healthz"
            wait_for(lambda: get(healthz) == 200, "200 from /healthz", 30, process)
            # /metrics from the installed dependencies (prometheus_client is declared).
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
                names = {f.name for f in text_string_to_metric_families(page.read().decode())}
            assert {"tickler_build_info", "process_cpu_seconds", "tickler_messages"} <= names
            wait_for(database.exists, "SQLite file", 30, process)
            wait_for(lambda: logged(log_path.read_text(), "started"), "action=started", 30, process)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log_path.read_text()
    assert code == 0, output
    assert logged(output, "stopped"), output
    # Written to a file, not a terminal: one JSON object per line.
    assert all(line.startswith("{") for line in output.splitlines() if line), output


def assert_package_data_in(wheel: Path) -> None:
    """Every file the package-data patterns of pyproject.toml name is in the wheel."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{package}/{path.relative_to(ROOT / package).as_posix()}"
        for package, patterns in pyproject["tool"]["setuptools"]["package-data"].items()
        for pattern in patterns
        for path in (ROOT / package).glob(pattern)
        if path.is_file()
    }
    assert expected, "no package data found"
    assert expected <= names, sorted(expected - names)
    assert not any(name.startswith("tests/") for name in names)
