"""constraints.txt pins exactly what pyproject.toml resolves to, in the venv the tests run in.

The Dockerfile and CI install with ``-c constraints.txt``, so two builds of one commit get the
same versions. A dependency added to pyproject.toml (or upgraded in the venv) without
``scripts/lock`` fails here, with the lines that differ.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_constraints_are_the_venvs_resolution_of_pyproject() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_constraint_is_one_exact_version() -> None:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    names = [pin.partition("==")[0] for pin in pins]
    assert names == sorted(set(names))  # one pin per package, in order: diffs stay readable
    for pin in pins:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*==[0-9][A-Za-z0-9.+!-]*", pin), pin
