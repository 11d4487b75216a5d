"""The deployment's settings: read from the environment once, at the edge, and passed down.

The edges are the processes' entry points: the ``hotline-eval`` command, the
web app factory, and the worker's jobs (RQ calls them by name, in a process
it made). Each builds one :class:`Settings` and hands its values to what it
starts; nothing below reads ``os.environ``, so a test or a second store in one
process says what it wants by passing it.

pydantic-settings does the reading: each field names its variable (the names
predate a common prefix: ``DATABASE_URL``, ``REDIS_URL`` and ``AMI_*`` have
none); an empty variable counts as unset, as it always has here.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# A secret that signs sessions, links and webhooks or keys a hash must not be guessable: 32 characters at least
# (``python -c "import secrets; print(secrets.token_urlsafe(32))"`` makes one of 43), and not one a person
# typed to get past the length (few different characters, a short pattern repeated, a run like abcd…).
MIN_SECRET_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 8
# The secrets this deployment makes. The SMS gateway's token and the AMI secret are not among them: their
# issuers choose them, and refusing a short one would only stop the 补充评价 SMS or the dialer.
SECRET_FIELDS = ("secret_key", "inbound_secret", "inbound_secret_previous", "number_key", "pull_tokens",
                 "metrics_token")


def weak_secret(value: str) -> str | None:
    """Why ``value`` is too weak to be a secret, in a few words; None when it will do."""
    if len(value) < MIN_SECRET_LENGTH:
        return f"is too short ({len(value)} characters, at least {MIN_SECRET_LENGTH} are needed)"
    if len(set(value)) < MIN_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_DISTINCT_CHARACTERS} different characters"
    if any(value == (value[:period] * (len(value) // period + 1))[:len(value)]
           for period in range(1, len(value) // 2 + 1)):
        return "repeats a short pattern"
    steps = Counter(ord(b) - ord(a) for a, b in zip(value, value[1:], strict=False))
    if steps.most_common(1)[0][1] > len(value) // 2:
        return "is mostly a run of consecutive characters"
    return None


class Settings(BaseSettings):
    # Fields are set by their names in code and tests; the prefix keeps a name from ever being read
    # from a variable of someone else's (``home`` from ``$HOME``).
    model_config = SettingsConfigDict(env_prefix="HOTLINE_EVAL_", frozen=True, env_ignore_empty=True,
                                      extra="ignore", validate_by_name=True, validate_by_alias=True,
                                      # An error names the variable, never its value: secrets end up in logs.
                                      hide_input_in_errors=True)

    # Where the embedded default keeps its files: the SQLite database, the journal spool, the models.
    home: Path = Field(Path("var"), validation_alias="HOTLINE_EVAL_HOME")
    database_url_given: str | None = Field(None, validation_alias="DATABASE_URL", repr=False)
    spool_given: Path | None = Field(None, validation_alias="HOTLINE_EVAL_SPOOL")
    models_given: Path | None = Field(None, validation_alias="HOTLINE_EVAL_MODELS")
    # None: the files shipped in rating_core (rules.yaml, scoring_rules.yaml).
    rules_file: Path | None = Field(None, validation_alias="HOTLINE_EVAL_RULES")
    scoring_file: Path | None = Field(None, validation_alias="HOTLINE_EVAL_SCORING")
    # 行政区划代码 in every outbox payload.
    region_code: str | None = Field(None, validation_alias="HOTLINE_EVAL_REGION_CODE")
    # What a provincial profile (rating_core/outbox/profiles/) may ask for besides the region: the centre's
    # 18-character 统一社会信用代码 as its department code, and the code the platform gave this data source.
    department_code: str | None = Field(None, validation_alias="HOTLINE_EVAL_DEPARTMENT_CODE")
    data_source_code: str | None = Field(None, validation_alias="HOTLINE_EVAL_DATA_SOURCE_CODE")

    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias="REDIS_URL", repr=False)

    # The web tool: it refuses to start without a secret key (outside the demo).
    secret_key: str | None = Field(None, validation_alias="HOTLINE_EVAL_SECRET_KEY", repr=False)
    insecure_cookies: bool = Field(False, validation_alias="HOTLINE_EVAL_INSECURE_COOKIES")
    # How many reverse proxies (HTTPS terminators) stand in front of the web tool and append the client's
    # address to X-Forwarded-For; 0 when it is reached directly. The audit log and the sign-in lock per
    # address need the client's address, not the proxy's.
    proxies: int = Field(0, ge=0, le=5, validation_alias="HOTLINE_EVAL_PROXIES")
    report_from: str | None = Field(None, validation_alias="HOTLINE_EVAL_REPORT_FROM")
    report_to: str | None = Field(None, validation_alias="HOTLINE_EVAL_REPORT_TO")
    inbound_secret: str | None = Field(None, validation_alias="HOTLINE_EVAL_INBOUND_SECRET", repr=False)
    inbound_secret_previous: str | None = Field(None, validation_alias="HOTLINE_EVAL_INBOUND_SECRET_PREVIOUS",
                                                repr=False)
    pull_tokens: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="HOTLINE_EVAL_PULL_TOKENS",
                                                              repr=False)
    # The key of the keyed hash (HMAC-SHA256) that replaces caller numbers past their retention
    # (rating_core.rules.rulebook's retention): kept for good, or yesterday's hashes stop matching today's.
    number_key: str | None = Field(None, validation_alias="HOTLINE_EVAL_NUMBER_KEY", repr=False)

    # The 补充评价 SMS: sent only when the gateway, the public address and the secret key are all set.
    sms_url: str | None = Field(None, validation_alias="HOTLINE_EVAL_SMS_URL")
    sms_token: str | None = Field(None, validation_alias="HOTLINE_EVAL_SMS_TOKEN", repr=False)
    public_url: str | None = Field(None, validation_alias="HOTLINE_EVAL_PUBLIC_URL")

    # The dialer's Asterisk Manager Interface account.
    ami_host: str = Field("127.0.0.1", validation_alias="AMI_HOST")
    ami_port: int = Field(5038, validation_alias="AMI_PORT")
    ami_username: str = Field("hotline-eval", validation_alias="AMI_USERNAME")
    ami_secret: str | None = Field(None, validation_alias="AMI_SECRET", repr=False)

    # Who may read the web tool's /metrics (web/metrics.py): a Prometheus sending this bearer token, or one at
    # these addresses or networks (comma-separated, as the tool sees the client: after HOTLINE_EVAL_PROXIES).
    # Neither set: nobody, for the counts of 差评 and tasks are the centre's business.
    metrics_token: str | None = Field(None, validation_alias="HOTLINE_EVAL_METRICS_TOKEN", repr=False)
    metrics_from: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (), validation_alias="HOTLINE_EVAL_METRICS_FROM")

    # The processes' logs (hotline_eval/logging_setup.py): a line of text or a JSON object per record, stamped
    # in this zone with its offset; Beijing time, as the tables beside them, whatever the host's own zone.
    log_format: Literal["text", "json"] = Field("text", validation_alias="HOTLINE_EVAL_LOG_FORMAT")
    log_timezone: str = Field("Asia/Shanghai", validation_alias="HOTLINE_EVAL_LOG_TIMEZONE")

    @field_validator("pull_tokens", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(token.strip() for token in value.split(",") if token.strip())
        return value

    @field_validator("metrics_from", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
            except ValueError:
                raise ValueError("HOTLINE_EVAL_METRICS_FROM is not a comma-separated list of addresses or "
                                 "networks (such as 127.0.0.1,10.0.5.0/24)") from None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_timezone")
    @classmethod
    def _zone_name(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "Asia" is a folder of the database, not a zone
            raise ValueError("HOTLINE_EVAL_LOG_TIMEZONE is not a time zone name (such as Asia/Shanghai)") from None
        return value

    @field_validator(*SECRET_FIELDS)
    @classmethod
    def _strong(cls, value: str | tuple[str, ...] | None, info: ValidationInfo) -> object:
        """A weak secret stops the process at start, naming the variable (never the value)."""
        assert info.field_name is not None
        variable = cls.model_fields[info.field_name].validation_alias
        for secret in (value,) if isinstance(value, str) else value or ():
            why = weak_secret(secret)
            if why:
                raise ValueError(f"{variable} {why}; generate one with "
                                 f"python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        return value

    @property
    def database_url(self) -> str:
        """``$DATABASE_URL``, else a SQLite file under the home directory."""
        return self.database_url_given or f"sqlite:///{self.home / 'hotline-eval.db'}"

    @property
    def spool_dir(self) -> Path:
        """The IVR's journal of call events, and its dead letters."""
        return self.spool_given or self.home / "spool"

    @property
    def models_dir(self) -> Path:
        """Where ``models fetch`` puts speech models and the recognisers look first."""
        return self.models_given or self.home / "models"

    @property
    def log_zone(self) -> ZoneInfo:
        """The zone every log line is stamped in."""
        return ZoneInfo(self.log_timezone)

    @property
    def inbound_secrets(self) -> tuple[str, ...]:
        """The platform's inbound signing secrets, the current one first (the previous one during a rotation)."""
        return tuple(secret for secret in (self.inbound_secret, self.inbound_secret_previous) if secret)
