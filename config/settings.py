"""Settings: environment variables (``TICKLER_…``), a ``.env`` file and a secrets directory.

Built once at start (``Settings()``) and passed down; nothing else reads the environment.
Every field has a default that works on a laptop: an SQLite file and a Maildir under ``./var``,
the shipped demo programs, HTTP on loopback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRETS_DIR = Path("/run/secrets")


class Settings(BaseSettings):
    """Everything a deployment can set; see the README's Configuration section."""

    model_config = SettingsConfigDict(
        env_prefix="TICKLER_",
        env_file=".env",
        env_file_encoding="utf-8",
        secrets_dir=os.environ.get("TICKLER_SECRETS_DIR")
        or (str(DEFAULT_SECRETS_DIR) if DEFAULT_SECRETS_DIR.is_dir() else None),
        extra="ignore",
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
    mail_from: str = "Tickler Compliance <compliance@example.com>"
    maildir: Path = Path("var/maildir")
    template_dir: Path | None = Field(default=None, description="Overrides for email templates")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    public_url: str = Field(default="http://127.0.0.1:8080", description="Base of feed URLs")
    api_tokens: list[SecretStr] = Field(default_factory=list, description="Bearer tokens")

    compliance_email: str = Field(
        default="compliance@example.com", description="The compliance team's address"
    )
    compliance_officer_email: str = Field(
        default="cfo@example.com", description="Escalations go here (the CFO by default)"
    )

    sweep_seconds: float = Field(default=60.0, gt=0, description="Safety-net sweep period")
    lease_seconds: float = Field(default=300.0, gt=0, description="Claim lease of a send")
    max_attempts: int = Field(default=8, ge=1, description="Temporary failures before giving up")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value
