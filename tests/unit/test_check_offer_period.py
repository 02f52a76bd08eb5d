"""`tickler check` and an offer open fewer than 20 business days: a warning, or refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from config.loader import default_program_dir
from scheduler.cli.main import cli


def short_offer(tmp_path: Path) -> Path:
    programs = tmp_path / "programs"
    programs.mkdir()
    text = (default_program_dir() / "option-exchange-2003.toml").read_text(encoding="utf-8")
    # Open on Thursday 16 January 2003: two business days to the 20th's cutoff.
    text, n = re.subn(r"(?m)^open = 2002-12-19$", "open = 2003-01-16", text)
    assert n == 1
    text = re.sub(r"(?ms)^\[\[presentations\]\].*?(?=^\[(?!\[presentations)|\Z)", "", text)
    (programs / "offer.toml").write_text(text, encoding="utf-8")
    return programs


@pytest.mark.parametrize(("setting", "code"), [(None, 0), ("warn", 0), ("refuse", 2)])
def test_a_short_offer(
    setting: str | None, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    programs = short_offer(tmp_path)
    monkeypatch.delenv("TICKLER_OFFER_PERIOD", raising=False)
    if setting:
        monkeypatch.setenv("TICKLER_OFFER_PERIOD", setting)
    result = CliRunner().invoke(cli, ["check", "--config", str(programs)])
    assert result.exit_code == code, result.output
    assert "offer.toml: the offer is open 2 business days" in result.stderr
    assert "at least 20 business days" in result.stderr
    assert ("ok  option-exchange-2003" in result.stdout) is (code == 0)


def test_the_seed_offer_is_long_enough(tmp_path: Path) -> None:
    programs = tmp_path / "programs"
    programs.mkdir()
    shutil.copy(default_program_dir() / "option-exchange-2003.toml", programs)
    result = CliRunner().invoke(cli, ["check", "--config", str(programs)])
    assert result.exit_code == 0
    assert "business days" not in result.stderr
