"""Settings: environment variables (``TICKLER_…``), a ``.env`` file and a secrets directory.

Built once at start (``Settings()``) and passed down; nothing else reads the environment.
Any setting can also be read from a file named by ``TICKLER_<NAME>_FILE`` (the container
convention for secrets, e.g. ``TICKLER_SMTP_PASSWORD_FILE=/run/secrets/smtp_password``).
Precedence, highest first: ``TICKLER_<NAME>_FILE``, ``TICKLER_<NAME>``, ``.env``, the secrets
directory (files named with the prefix: ``tickler_smtp_password``), the default.

Every field has a default that works on a laptop: an SQLite file and a Maildir under ``./var``,
the shipped demo programs, HTTP on loopback.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from config.emails import Email, parse_domain, parse_email
from config.facts import BACKFILL, CAPABILITIES, NOUNS, FactKind
from config.locales import parse_locale

DEFAULT_SECRETS_DIR = Path("/run/secrets")
API_SECRET_MIN = 16
ACTION_SECRET_MIN = 32
_TOKEN_NAME = re.compile(r"([a-z0-9][a-z0-9_.-]{0,63}):(.+)", re.DOTALL)
#: An API scope entry that lets a token record every kind of fact.
EVERY_KIND = "*"


def _scope(value: object) -> object:
    if value in CAPABILITIES:
        return value
    try:
        return FactKind.from_noun(value)
    except ValueError as exc:
        raise ValueError(
            f"{exc}; or {BACKFILL!r} (record facts as of an earlier time), 'read' (the read "
            "API) or 'messages' (retry, cancel, resend)"
        ) from None


# An API scope names kinds of fact by their nouns ("response", "hire"), as the API's paths do,
# or grants the backfill capability ("backfill"), which no kind and no "*" implies.
Scope = Annotated[FactKind | Literal["backfill", "read", "messages"], BeforeValidator(_scope)]


def api_token_parts(value: str) -> tuple[str, str]:
    """Split an API token setting ``NAME:SECRET`` into its name and secret.

    Every token is named: the name is what ``TICKLER_API_SCOPES`` grants kinds to and what the
    audit trail records. A value that is not ``NAME:SECRET`` with a well-formed name (an
    unnamed secret, ``HR:…``) raises ValueError, which does not quote the value.
    """
    match = _TOKEN_NAME.fullmatch(value)
    if match is None:
        raise ValueError(
            "it is not NAME:SECRET with a NAME of 1 to 64 lowercase letters, digits, '_', '.' "
            "or '-', starting with a letter or digit"
        )
    return match.group(1), match.group(2)


def _every_kind(value: Any) -> Any:
    """Expand ``"*"`` (alone or in a list) to every kind of fact, before the kinds are checked."""
    if not isinstance(value, dict):
        return value
    expanded: dict[Any, Any] = {}
    for key, scope in value.items():
        if scope == EVERY_KIND:
            scope = [EVERY_KIND]
        if isinstance(scope, list) and EVERY_KIND in scope:
            # Every kind, and whatever else the list grants that is not a kind of fact.
            kinds = {EVERY_KIND, *NOUNS, *FactKind}
            scope = [*FactKind, *(s for s in scope if not (isinstance(s, str) and s in kinds))]
        expanded[key] = scope
    return expanded


def _mailbox(value: str) -> str:
    """Check ``Name <address>`` or a bare address: the address by the one rule of addresses,
    the name as header text on one line (no ``<``, ``>`` or quotes to confuse a parser)."""
    address = value
    if value.endswith(">") and "<" in value:
        name, address = value[:-1].rsplit("<", 1)
        if not name.isprintable() or any(c in name for c in '<>"'):
            raise ValueError(f"the name {name!r} must be one line of text without <, > or quotes")
    parse_email(address)
    return value


class SettingFileError(SettingsError):
    """A ``TICKLER_<NAME>_FILE`` variable names a file that cannot be read."""


class FileEnvSettingsSource(EnvSettingsSource):
    """Read ``TICKLER_<NAME>`` from the file that ``TICKLER_<NAME>_FILE`` names.

    The file wins over ``TICKLER_<NAME>``, so that a mounted secret overrides an image's ENV
    default without unsetting it. Only the process environment is read (not ``.env``).
    Trailing newlines are dropped, as a shell's ``$(cat file)`` would; other whitespace is kept.
    The text is parsed as the variable's would be: JSON for lists and dicts
    (``TICKLER_API_TOKENS_FILE``). A file that cannot be read stops the start with an error
    naming the variable and the path, rather than falling back to a default silently.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        field_key, complex_ = field_name, False
        for field_key, env_name, complex_ in self._extract_field_info(field, field_name):
            file_var = f"{env_name}_file" if not self.case_sensitive else f"{env_name}_FILE"
            path = self.env_vars.get(file_var)
            if path is None:
                continue
            variable = file_var.upper()
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise SettingFileError(f"{variable}={path}: cannot read it: {reason}") from None
            return text.rstrip("\r\n"), field_key, complex_
        return None, field_key, complex_

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if value is None:  # no _FILE variable: leave the field to the next source
            return None
        return super().prepare_field_value(field_name, field, value, value_is_complex)

    def __call__(self) -> dict[str, Any]:
        try:
            return super().__call__()
        except SettingsError as exc:
            # pydantic-settings wraps it as "error getting value for field …": say which file.
            if isinstance(exc.__cause__, SettingFileError):
                raise exc.__cause__ from None
            raise


class Settings(BaseSettings):
    """Everything a deployment can set; see the README's Configuration section."""

    model_config = SettingsConfigDict(
        env_prefix="TICKLER_",
        env_file=".env",
        env_file_encoding="utf-8",
        secrets_dir=os.environ.get("TICKLER_SECRETS_DIR")
        or (str(DEFAULT_SECRETS_DIR) if DEFAULT_SECRETS_DIR.is_dir() else None),
        extra="ignore",
        # A value may be a secret (an API token, a URL with its password): errors name the
        # setting and say what is wrong, never echo the value.
        hide_input_in_errors=True,
    )

    database_url: str = Field(
        default="sqlite:///var/tickler.sqlite",
        description="SQLAlchemy URL: sqlite:///FILE or postgresql://USER@HOST/DB",
    )
    program_dir: Path | None = Field(
        default=None, description="Directory of program files (*.toml); default: the demo programs"
    )
    timezone: str = Field(default="America/Los_Angeles", description="Default zone of programs")

    smtp_host: str | None = Field(default=None, description="SMTP server; unset: write to Maildir")
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = 30.0
    smtp_connections: int = Field(default=4, ge=1, le=64)
    smtp_rate: float | None = Field(
        default=None,
        gt=0,
        description="Messages per second at most, over all connections (a relay's limit); "
        "unset: as fast as the server takes them",
    )
    smtp_domain_rate: float | None = Field(
        default=None,
        gt=0,
        description="Messages per second at most to one recipient domain; unset: no such limit",
    )
    unrecorded_sends: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Accepted messages that may wait for their 'sent' commit while sending goes on",
    )
    mail_from: str = "Tickler Compliance <compliance@example.com>"
    message_id_domain: str | None = Field(
        default=None,
        description="Domain of the Message-IDs of the emails sent (and of their threads' "
        "references), e.g. mail.example.com; default: the domain of mail_from",
    )
    maildir: Path = Path("var/maildir")
    template_dir: Path | None = Field(default=None, description="Overrides for email templates")
    locale: str | None = Field(
        default=None,
        description="Locale of every email whose recipient has none of their own (e.g. fr, "
        "fr-CA): its templates' folder, then English, and its dates; unset: English",
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = Field(
        default="",
        description="Base of feed URLs, action links and redirects: the address users reach; "
        "default: http://HTTP_HOST:HTTP_PORT (127.0.0.1 for an unspecified host)",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token /metrics asks for; unset: /metrics is open to who can reach it",
    )
    metrics_host: str | None = Field(
        default=None, description="Listen address of the metrics listener; default: http_host"
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /metrics on this port only (a listener of its own), not on http_port",
    )
    api_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="JSON API bearer tokens, each NAME:SECRET (the name goes in the audit trail)",
    )
    api_scopes: Annotated[dict[str, list[Scope]], BeforeValidator(_every_kind)] = Field(
        default_factory=dict,
        validate_default=True,  # tokens without an entry are refused even when this is unset
        description='What each named API token may record, e.g. {"hr": ["hire", "termination"]} '
        'or {"ops": "*"} (every kind); every token needs an entry, every entry a token',
    )
    action_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the action links of emails (acknowledge, elect, upload a "
        "CMRT; at least 32 characters); unset: emails carry no links and /act pages answer 404. "
        "Changing it revokes every link sent",
    )
    session_key: SecretStr | None = Field(
        default=None,
        description="Key that signs the dashboard's session cookies (at least 32 characters); "
        "unset: a random key per process, so a restart signs everyone out and replicas do not "
        "share sessions. Set it when running more than one replica",
    )
    auth_header: str | None = Field(
        default=None,
        description="Header naming the signed-in user, set by an authenticating proxy "
        "(e.g. X-Forwarded-User from oauth2-proxy); the name must be an existing user. Only "
        "set it when the proxy is the sole way in: anyone reaching the daemon directly could "
        "send the header. Unset (the default): the dashboard's own login",
    )
    program_contacts: dict[str, str] = Field(
        default_factory=dict,
        description="Each program's named contact, the Reply-To of its emails and the person "
        'they name for questions, e.g. {"fcpa": "Dana Kim, Compliance Officer '
        '<dana.kim@example.com>"}',
    )
    public_feeds: list[str] = Field(
        default_factory=list,
        description="Feeds served without a token at /feeds/public/NAME.ics, "
        'e.g. ["program:fcpa:representatives"]',
    )
    offer_period: Literal["warn", "refuse"] = Field(
        default="warn",
        description="What tickler check does with an offer open fewer than 20 business days "
        "(Rules 13e-4(f)(1)(i), 14e-1(a)): warn, or refuse it (exit 2)",
    )
    feed_cache_size: int = Field(default=1024, ge=1, description="Rendered feeds kept in memory")
    feed_check_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Seconds between checks for changes feeds depend on; 0: every request",
    )

    compliance_email: Email = Field(
        default="compliance@example.com", description="The compliance team's address"
    )
    compliance_officer_email: Email = Field(
        default="cfo@example.com", description="Escalations go here (the CFO by default)"
    )

    sweep_seconds: float = Field(default=60.0, gt=0, description="Safety-net sweep period")
    full_plan_seconds: float = Field(
        default=6 * 3600.0,
        ge=1,
        description="Period of the whole plan (the safety net), run in parts between reactions",
    )
    lease_seconds: float = Field(default=300.0, gt=0, description="Claim lease of a send")
    max_attempts: int = Field(default=8, ge=1, description="Temporary failures before giving up")
    retry_backoff_seconds: float = Field(
        default=30.0, gt=0, description="Wait before the first retry; doubles per attempt"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one object per line; text: coloured lines for a terminal; "
        "auto: text on a terminal, json otherwise",
    )
    log_recipients: Literal["domain", "address"] = Field(
        default="domain",
        description="What a delivery's log line says of the recipient: the domain, or the address",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Put ``TICKLER_<NAME>_FILE`` just above the environment variables."""
        return (
            init_settings,
            FileEnvSettingsSource(settings_cls),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _public_url_from_port(self) -> Settings:
        # The URLs tickler prints and mails must reach the port it actually listens on
        # (TICKLER_HTTP_PORT=8091 printed :8080 URLs); a proxy in front sets TICKLER_PUBLIC_URL.
        if not self.public_url:
            host = self.http_host
            if host in ("", "0.0.0.0", "::"):  # listening everywhere: this machine answers
                host = "127.0.0.1"
            elif ":" in host:
                host = f"[{host}]"
            self.public_url = f"http://{host}:{self.http_port}"
        return self

    @field_validator("api_tokens")
    @classmethod
    def _strong_tokens(cls, values: list[SecretStr]) -> list[SecretStr]:
        names: set[str] = set()
        for n, value in enumerate(values, start=1):
            try:
                name, secret = api_token_parts(value.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"API token {n}: {exc}") from None
            if len(secret) < API_SECRET_MIN:
                raise ValueError(
                    f"API token {n} ({name}): the secret needs at least {API_SECRET_MIN} characters"
                )
            if name in names:
                raise ValueError(f"API token name {name!r} is used twice")
            names.add(name)
        return values

    @field_validator("api_scopes")
    @classmethod
    def _scopes_match_tokens(
        cls, scopes: dict[str, list[Any]], info: ValidationInfo
    ) -> dict[str, list[Any]]:
        # Deny by default: a token may record only what its entry grants, so an entry that
        # names no token (a typo, "HR" for "hr") would leave a token silently powerless or, if
        # that token is added later under the name, silently powerful. Both are refused here.
        tokens = info.data.get("api_tokens")
        if tokens is None:  # api_tokens is invalid: its own error says why
            return scopes
        names = [api_token_parts(t.get_secret_value())[0] for t in tokens]
        problems = []
        for key in scopes:
            if key not in names:
                like = [n for n in names if n.lower() == key.lower()]
                if like:
                    known = f"did you mean {like[0]!r}?"
                else:
                    known = f"tokens: {', '.join(names)}" if names else "there are no tokens"
                problems.append(f"{key!r} names no API token ({known})")
        for name in names:
            if name not in scopes:
                problems.append(
                    f"API token {name!r} has no entry: list what it may record, e.g. "
                    f'{{"{name}": ["hire"]}}, or {{"{name}": "*"}} for every kind'
                )
        if problems:
            raise ValueError("; ".join(problems))
        return scopes

    @field_validator("metrics_token")
    @classmethod
    def _strong_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < API_SECRET_MIN:
            raise ValueError(f"the token needs at least {API_SECRET_MIN} characters")
        return value

    @field_validator("action_secret")
    @classmethod
    def _strong_action_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < ACTION_SECRET_MIN:
            raise ValueError(f"the key needs at least {ACTION_SECRET_MIN} characters")
        return value

    @field_validator("session_key")
    @classmethod
    def _strong_session_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < ACTION_SECRET_MIN:
            raise ValueError(f"the key needs at least {ACTION_SECRET_MIN} characters")
        return value

    @field_validator("auth_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError(f"{value!r} is not a header name (letters, digits and -)")
        return value

    @field_validator("program_contacts")
    @classmethod
    def _contacts(cls, values: dict[str, str]) -> dict[str, str]:
        for program, value in values.items():
            try:
                _mailbox(value)
            except ValueError as exc:
                raise ValueError(f"contact of {program!r}: {exc}") from None
        return values

    @field_validator("mail_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        # "Name <address>" or a bare address; the address follows the one rule of every
        # address, and the name is header text that must stay on one line.
        address = value
        if value.endswith(">") and "<" in value:
            name, address = value[:-1].rsplit("<", 1)
            if not name.isprintable():
                raise ValueError(f"the sender's name {name!r} must be one line of text")
        parse_email(address)
        return value

    @field_validator("message_id_domain")
    @classmethod
    def _message_id_domain(cls, value: str | None) -> str | None:
        return parse_domain(value) if value is not None else None

    @property
    def message_domain(self) -> str:
        """Return the domain Message-IDs are on: ``message_id_domain``, else the sender's."""
        address = self.mail_from.rstrip(">").rpartition("<")[2]  # validated: one address
        return self.message_id_domain or address.rpartition("@")[2]

    @field_validator("public_feeds")
    @classmethod
    def _feed_names(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith(("program:", "person:")):
                raise ValueError(f"feed {value!r}: a feed name starts with program: or person:")
        return values

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        # Empty is unset (a compose file's TICKLER_LOCALE= ): English, as without the setting.
        return parse_locale(value) if value and value.strip() else None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value


#: TICKLER_ variables that are read, but are not settings.
_NOT_SETTINGS = frozenset({"TICKLER_SECRETS_DIR"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Return a warning for each ``TICKLER_`` variable that names no setting.

    pydantic-settings ignores them (a misspelt ``TICKLER_HTTP_PROT`` would silently leave the
    default), so the start names each one, with the setting it most resembles. The
    ``TICKLER_TEST_`` variables belong to the test suite, ``TICKLER_PG_`` to
    ``scripts/pg-start``.
    """
    known = {f"TICKLER_{name.upper()}" for name in Settings.model_fields}
    warnings = []
    for variable in sorted(environ):
        name = variable.upper()
        if not name.startswith("TICKLER_") or name.startswith(("TICKLER_TEST_", "TICKLER_PG_")):
            continue
        if name in known or name in _NOT_SETTINGS or name.removesuffix("_FILE") in known:
            continue
        like = difflib.get_close_matches(name.removesuffix("_FILE"), known, n=1, cutoff=0.8)
        hint = f" (did you mean {like[0]}?)" if like else ""
        warnings.append(f"{variable} is not a setting and is ignored{hint}")
    return warnings
