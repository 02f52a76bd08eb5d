"""Where settings come from: TICKLER_<NAME>_FILE, the environment and the secrets directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.facts import FactKind
from config.settings import SettingFileError, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run without the caller's TICKLER_* variables and away from any ``.env``."""
    for name in list(os.environ):
        if name.upper().startswith("TICKLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def secret(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_variable_sets_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A trailing newline (as `echo` writes) is not part of the value; other spaces are.
    path = secret(tmp_path, "smtp_password", " pass phrase \n")
    monkeypatch.setenv("TICKLER_SMTP_PASSWORD_FILE", str(path))
    password = Settings().smtp_password
    assert password is not None
    assert password.get_secret_value() == " pass phrase "


def test_the_file_wins_over_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # So that a mounted secret overrides an image's ENV default without unsetting it.
    path = secret(tmp_path, "url", "postgresql://tickler:pw@postgres/tickler\n")
    monkeypatch.setenv("TICKLER_DATABASE_URL", "sqlite:////var/lib/tickler/tickler.sqlite")
    monkeypatch.setenv("TICKLER_DATABASE_URL_FILE", str(path))
    assert Settings().database_url == "postgresql://tickler:pw@postgres/tickler"


def test_a_file_is_parsed_like_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = secret(tmp_path, "tokens", '["hr:hr-secret-0123456789", "ops:ops-secret-0123456789"]')
    port = secret(tmp_path, "port", "9090\n")
    monkeypatch.setenv("tickler_api_tokens_file", str(tokens))  # names are case-insensitive
    monkeypatch.setenv("TICKLER_API_SCOPES", '{"hr": ["hire"], "ops": "*"}')
    monkeypatch.setenv("TICKLER_HTTP_PORT_FILE", str(port))
    settings = Settings()
    assert [t.get_secret_value() for t in settings.api_tokens] == [
        "hr:hr-secret-0123456789",
        "ops:ops-secret-0123456789",
    ]
    assert settings.http_port == 9090


def test_a_file_value_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLER_TIMEZONE_FILE", str(secret(tmp_path, "tz", "Mars/Olympus\n")))
    with pytest.raises(ValueError, match="unknown time zone"):
        Settings()


def test_a_missing_file_names_the_variable_and_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "smtp_password"
    monkeypatch.setenv("TICKLER_SMTP_PASSWORD_FILE", str(missing))
    with pytest.raises(SettingFileError) as caught:
        Settings()
    assert str(caught.value) == (
        f"TICKLER_SMTP_PASSWORD_FILE={missing}: cannot read it: No such file or directory"
    )


def test_a_directory_is_not_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLER_DATABASE_URL_FILE", str(tmp_path))
    with pytest.raises(SettingFileError, match=f"TICKLER_DATABASE_URL_FILE={tmp_path}: "):
        Settings()


def test_secrets_directory_files_are_named_with_the_prefix(tmp_path: Path) -> None:
    # pydantic-settings looks a field up in the secrets directory under its full variable
    # name, prefix included and case-insensitively: tickler_smtp_password, not smtp_password.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    secret(secrets, "tickler_smtp_password", "from-secrets-dir\n")
    secret(secrets, "smtp_username", "ignored")
    settings = Settings(_secrets_dir=secrets)
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "from-secrets-dir"
    assert settings.smtp_username is None


def test_log_format_and_recipients(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format == "auto"  # text on a terminal, JSON otherwise
    monkeypatch.setenv("TICKLER_LOG_FORMAT", "text")
    assert Settings().log_format == "text"
    assert Settings().log_recipients == "domain"
    monkeypatch.setenv("TICKLER_LOG_RECIPIENTS", "address")
    assert Settings().log_recipients == "address"
    monkeypatch.setenv("TICKLER_LOG_RECIPIENTS", "everything")
    with pytest.raises(ValueError, match="log_recipients"):
        Settings()


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("1", 1), ("16", 16), ("1000", 1000), ("0", None), ("1001", None), ("many", None)],
)
def test_unrecorded_sends_bounds(
    monkeypatch: pytest.MonkeyPatch, value: str, accepted: int | None
) -> None:
    monkeypatch.setenv("TICKLER_UNRECORDED_SENDS", value)
    if accepted is None:
        with pytest.raises(ValueError, match="unrecorded_sends"):
            Settings()
    else:
        assert Settings().unrecorded_sends == accepted


# API scopes fail closed --------------------------------------------------------------------

HR, OPS = "hr:hr-secret-0123456789", "ops:ops-secret-0123456789"


@pytest.mark.parametrize(
    ("tokens", "scopes", "message"),
    [
        # A token without an entry used to record every kind.
        ([HR], "{}", "API token 'hr' has no entry"),
        ([HR, OPS], '{"hr": ["hire"]}', "API token 'ops' has no entry"),
        # An entry naming no token (a typo, another case) used to be ignored.
        (
            [HR],
            '{"hr": ["hire"], "HR": ["election"]}',
            "'HR' names no API token (did you mean 'hr'?)",
        ),
        ([HR], '{"hr": ["hire"], "h r": ["hire"]}', "'h r' names no API token (tokens: hr)"),
        ([], '{"kiosk": ["election"]}', "'kiosk' names no API token (there are no tokens)"),
    ],
    ids=["no-entry", "one-of-two", "other-case", "typo", "no-tokens"],
)
def test_api_scopes_fail_closed(
    monkeypatch: pytest.MonkeyPatch, tokens: list[str], scopes: str, message: str
) -> None:
    monkeypatch.setenv("TICKLER_API_TOKENS", json.dumps(tokens))
    monkeypatch.setenv("TICKLER_API_SCOPES", scopes)
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == ("api_scopes",)
    assert message in error["msg"]


@pytest.mark.parametrize(
    "token",
    [
        "HR:hr-secret-0123456789",  # used to be taken whole as an unnamed secret
        "hr team:hr-secret-0123456789",
        "-hr:hr-secret-0123456789",
        "hr-secret-0123456789",  # no name at all: nothing to scope, nothing to audit
    ],
)
def test_a_malformed_token_name_is_an_error_that_does_not_show_the_secret(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("TICKLER_API_TOKENS", json.dumps([HR, token]))
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == ("api_tokens",)
    assert error["msg"].startswith("Value error, API token 2: it is not NAME:SECRET")
    assert "secret" not in str(caught.value).replace("NAME:SECRET", "")


def test_api_scopes_grant_kinds_or_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKLER_API_TOKENS", json.dumps([HR, OPS, "audit:audit-secret-0123456"]))
    monkeypatch.setenv("TICKLER_API_SCOPES", '{"hr": ["hire"], "ops": "*", "audit": []}')
    settings = Settings()
    assert settings.api_scopes == {"hr": [FactKind.HIRE], "ops": list(FactKind), "audit": []}


def test_the_command_names_the_setting_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from scheduler.cli.main import cli

    monkeypatch.setenv("TICKLER_API_TOKENS", json.dumps([HR]))
    monkeypatch.setenv("TICKLER_API_SCOPES", '{"HR": ["hire"]}')
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert "error: setting TICKLER_API_SCOPES: " in result.output
    assert "'HR' names no API token (did you mean 'hr'?)" in result.output


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"TICKLER_HTTP_PORT": "8091"}, "http://127.0.0.1:8091"),
        ({"TICKLER_HTTP_HOST": "0.0.0.0", "TICKLER_HTTP_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"TICKLER_HTTP_HOST": "tickler.internal"}, "http://tickler.internal:8080"),
        ({"TICKLER_HTTP_HOST": "::1"}, "http://[::1]:8080"),
        (
            {"TICKLER_HTTP_PORT": "8091", "TICKLER_PUBLIC_URL": "https://cal.example.com"},
            "https://cal.example.com",
        ),
    ],
)
def test_public_url_follows_the_port_unless_set(
    env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().public_url == expected


def test_unknown_variables_are_named_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from config.settings import unknown_variables
    from scheduler.cli.main import cli

    env = {
        "TICKLER_HTTP_PROT": "8091",
        "TICKLER_SMTP_HOST": "mail",
        "TICKLER_API_TOKENS_FILE": "/run/secrets/t",
        "TICKLER_SECRETS_DIR": "/run/secrets",
        "TICKLER_TEST_POSTGRES_URL": "postgresql://x",
        "TICKLER_WHATEVER": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(env) == [
        "TICKLER_HTTP_PROT is not a setting and is ignored (did you mean TICKLER_HTTP_PORT?)",
        "TICKLER_WHATEVER is not a setting and is ignored",
    ]
    monkeypatch.setenv("TICKLER_HTTP_PROT", "8091")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0
    assert "warning: TICKLER_HTTP_PROT is not a setting" in result.stderr


def test_message_id_domain_defaults_to_the_senders_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TICKLER_MAIL_FROM", "Acme Compliance <compliance@acme-corp.com>")
    assert Settings().message_domain == "acme-corp.com"
    monkeypatch.setenv("TICKLER_MESSAGE_ID_DOMAIN", "mail.acme-corp.com")
    assert Settings().message_domain == "mail.acme-corp.com"
    for bad, says in [
        ("localhost", "has no dot"),
        ("mail..acme.com", "twice in a row"),
        ("10.0.0.1", "an IP address is not accepted"),
        ("acme.com>\r\nBcc: x", "may only hold letters"),
    ]:
        monkeypatch.setenv("TICKLER_MESSAGE_ID_DOMAIN", bad)
        with pytest.raises(ValueError, match="message_id_domain") as caught:
            Settings()
        assert says in str(caught.value)


@pytest.mark.parametrize("value", ["0.5", "0", "-1", "soon"])
def test_the_whole_plan_period_refuses_less_than_a_second(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # A period under a second would start the whole plan again at every tick.
    monkeypatch.setenv("TICKLER_FULL_PLAN_SECONDS", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == ("full_plan_seconds",)


def test_the_whole_plan_period_defaults_to_six_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().full_plan_seconds == 6 * 3600
    monkeypatch.setenv("TICKLER_FULL_PLAN_SECONDS", "30")
    assert Settings().full_plan_seconds == 30


def test_the_default_locale_is_normalised_and_empty_is_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().locale is None
    for value, expected in [("", None), ("  ", None), ("fr", "fr"), ("fr_ca", "fr-CA")]:
        monkeypatch.setenv("TICKLER_LOCALE", value)
        assert Settings().locale == expected


@pytest.mark.parametrize("bad", ["french", "fr/../x", "../en", "fr-CAN"])
def test_a_bad_default_locale_stops_the_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    from click.testing import CliRunner

    from scheduler.cli.main import cli

    monkeypatch.setenv("TICKLER_LOCALE", bad)
    with pytest.raises(ValidationError) as caught:
        Settings()
    [error] = caught.value.errors()
    assert error["loc"] == ("locale",)
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    said = f"error: setting TICKLER_LOCALE: Value error, {bad!r} is not a locale"
    assert said in result.output
