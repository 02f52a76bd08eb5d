"""Every package the code imports is declared in pyproject.toml, not just installed.

A package that arrives only as another's dependency (hypothesis through schemathesis) works on
this machine until that other package drops it; an import from a dev-only package in the
shipped code works in the test venv and fails in the image. The imports are read with ``ast``
from every module, those inside functions and ``if TYPE_CHECKING:`` included, and mapped to
the distributions that provide them by ``importlib.metadata``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = frozenset({"config", "calendars", "jobs", "scheduler", "tests", "bench"})
SHIPPED = ("config", "calendars", "jobs", "scheduler")


def normalise(name: str) -> str:
    """Return a distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert found, spec
    return normalise(found.group(1))


@cache
def declared() -> tuple[frozenset[str], frozenset[str]]:
    """Return the runtime and the dev distributions pyproject.toml declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = frozenset(map(requirement_name, project["dependencies"]))
    dev = frozenset(map(requirement_name, project["optional-dependencies"]["dev"]))
    return runtime, dev


def imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    """Yield the top-level name and line of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno


def undeclared(folders: tuple[str, ...], allowed: frozenset[str]) -> list[str]:
    """Return ``file:line: module`` for each third-party import no allowed package provides."""
    providers = packages_distributions()
    files = sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))
    assert files, folders
    problems = []
    for path in files:
        for module, line in imported_modules(path):
            if module in FIRST_PARTY or module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = {normalise(d) for d in providers.get(module, [])}
            if not dists & allowed:
                where = f"{path.relative_to(ROOT)}:{line}"
                given = ", ".join(sorted(dists)) or "nothing installed"
                problems.append(f"{where}: {module} (provided by {given})")
    return problems


def test_the_declarations_are_read() -> None:
    runtime, dev = declared()
    assert {"sqlalchemy", "prometheus-client", "psycopg"} <= runtime
    assert {"pytest", "hypothesis", "aiosmtpd"} <= dev


@pytest.mark.parametrize(
    ("folders", "kind"),
    [(("tests", "bench"), "runtime or dev"), (SHIPPED, "runtime")],
    ids=["tests and bench: runtime or dev", "shipped code: runtime only"],
)
def test_every_import_is_a_declared_package(folders: tuple[str, ...], kind: str) -> None:
    runtime, dev = declared()
    allowed = runtime | dev if kind == "runtime or dev" else runtime
    problems = undeclared(folders, allowed)
    assert not problems, f"imported but not declared as a {kind} dependency:\n" + "\n".join(
        problems
    )
