"""Settings, read from ``CME_*`` environment variables (and a ``.env`` file if present).

Read where the flows wire the pipeline together (``flows/_config.py`` turns them into the
tasks' frozen configs; the CLI reads them too): tasks, connectors and notification channels
never read settings themselves (docs/architecture.md).

Every field here is documented in the README's configuration table; a test keeps the two in
step. Secrets are ``SecretStr``: they print as ``**********``.

Every setting is checked when the settings load, so a wrong one stops a command or a flow run
at its start with one line naming it (:func:`get_settings` raises
:class:`~tasks.errors.ConfigError`), never halfway through a night. Address settings
(``CME_DUTY_INBOX``, ``CME_MAIL_FROM``, the values of ``CME_OTHER_LA_CONTACTS``) take one email
address, bare or in the ``Name <address>`` form; the name is dropped (messages carry the LA's
own sender name), so every address reaches the outbox bare.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from connectors import CommaList
from notifications import ChannelOptions, OptionError, channel_options
from policy import MAY_BE_AUTOMATIC
from tasks.errors import ConfigError

__all__ = ["ConfigError", "Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CME_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///cme.db",
        description="SQLAlchemy URL of the case database (SQLite file in the working "
        "directory by default; postgresql://user:pass@host/db in production).",
    )
    home_la: str = Field(
        default="850", pattern=r"^\d{3}$", description="This LA's 3-digit code (Hampshire: 850)."
    )
    connectors: CommaList = Field(
        default_factory=list,
        description="Comma-separated connector names to enable (installing one does not "
        "enable it). Empty means none; `cme demo` enables all built-ins.",
    )
    chunk_size: int = Field(
        default=250, ge=1, le=5000, description="Referrals per tracing task (one task per "
        "connector and chunk)."
    )
    min_rounds: int = Field(
        default=3, ge=1, description="Rounds of tracing that count (every enabled agency gave "
        "a final answer — found or not found, none pending, none in error — at most one a day) "
        "before 'whereabouts unknown' is proposed to an officer."
    )
    automatic_outcomes: CommaList = Field(
        default_factory=lambda: ["on_roll_elsewhere", "resident_other_la", "left_uk"],
        description="Comma-separated outcomes the rulebook acts on without a person when an "
        "agency matched the child on an identifier or answered from official records: any of "
        "on_roll_elsewhere, resident_other_la, left_uk. Any other is proposed to an officer; "
        "whereabouts_unknown (the joint deletion decision) always is.",
    )
    match_threshold: float = Field(
        default=0.9, ge=0.5, le=1.0, description="The confidence (0.5-1.0) an agency's match "
        "on an identifier needs to count as strong; below it, or matched on names and date of "
        "birth only, a finding is a possible match for an officer."
    )
    notification_channel: Literal["file", "smtp", "notify"] = Field(
        default="file", description="How notifications are sent: `file` (.eml files), "
        "`smtp`, or `notify` (GOV.UK Notify)."
    )
    outbox_dir: Path = Field(
        default=Path("outbox"), description="Folder for the `file` channel's .eml messages."
    )
    import_dir: Path = Field(
        default=Path("imports"), description="The import folder: the `intake` flow's `file` "
        "parameter (the Prefect UI) names a file in it, and nothing outside it (symbolic "
        "links resolved) is read. `cme import FILE` may name any regular file."
    )
    import_max_mb: int = Field(
        default=200, ge=1, le=10_000, description="Largest referral file intake reads, in MB "
        "(about 100,000 referrals)."
    )
    mail_from: str = Field(
        default="cme-team@la.example.org", description="Sender address of emails to schools."
    )
    notification_retry_days: int = Field(
        default=5, ge=1, le=30, description="Days a message that keeps failing to send (an "
        "outage) is retried, from its first attempt, before it is marked failed for an officer "
        "(`cme outbox retry` sends it again)."
    )
    smtp_host: str = Field(default="localhost", description="SMTP server host.")
    smtp_port: int = Field(default=25, description="SMTP server port.")
    smtp_username: str | None = Field(default=None, description="SMTP user, if it needs one.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password (secret).")
    smtp_starttls: bool = Field(default=False, description="Use STARTTLS with the SMTP server.")
    notify_api_key: SecretStr | None = Field(
        default=None, description="GOV.UK Notify API key (secret; holds the service id)."
    )
    notify_base_url: str = Field(
        default="https://api.notifications.service.gov.uk",
        description="GOV.UK Notify API base URL.",
    )
    duty_inbox: str = Field(
        default="cme-duty@la.example.org",
        description="The CME team's duty inbox: safeguarding tasks and overdue "
        "acknowledgements go here, for a person.",
    )
    la_name: str = Field(
        default="Hampshire County Council", description="This LA's name, used in messages."
    )
    signpost_contacts: dict[str, str] = Field(
        default_factory=lambda: {
            "attendance_support": "attendance-support@la.example.org",
            "medical_referrals": "medical-referrals@la.example.org",
            "reduced_hours_provision": "rhp@la.example.org",
            "elective_home_education": "ehe@la.example.org",
            "legal_intervention": "legal-intervention@la.example.org",
        },
        description="JSON object: Inclusion Support Service team → contact, for signposting "
        "referrals that are not CME.",
    )
    other_la_contacts: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: LA code → that LA's CME team address, for inter-LA "
        "notifications (unknown LAs go to the duty inbox for a person to forward).",
    )
    notify_template_ids: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object: template name → GOV.UK Notify template id.",
    )
    mendix_base_url: str | None = Field(
        default=None,
        description="Base URL of the referral form's published OData v4 service (the "
        "intake flow reads `Referrals` from it); unset: no OData intake.",
    )
    mendix_username: str | None = Field(default=None, description="OData basic-auth user.")
    mendix_password: SecretStr | None = Field(
        default=None, description="OData basic-auth password (secret)."
    )
    sandbox_world: Path | None = Field(
        default=None,
        description="A sandbox world file: when set, agencies are simulated in-process from "
        "it (the demo); when unset, connectors call the configured agencies.",
    )
    agency_environment: str | None = Field(
        default=None,
        description="A simulated agency environment (an entry point in group "
        "`cme.agency_environments`, e.g. `sandbox`) that answers for the agencies it "
        "simulates; every other connector calls its own host. Unset: `sandbox` when "
        "CME_SANDBOX_WORLD is set, else none (the real agencies).",
    )
    # Read again where clients are made (connectors/_transport.py); here so a bad value
    # stops start-up with one line.
    http_transport: Literal["aiohttp", "httpx"] = Field(
        default="aiohttp", description="HTTP transport for the agencies: `aiohttp` "
        "(httpx-aiohttp, the default: less CPU per request) or `httpx` (httpx's own)."
    )
    task_runner: Literal["thread", "dask"] = Field(
        default="thread", description="Prefect task runner for the nightly flow: `thread` "
        "(a thread pool in the flow's process) or `dask` (prefect-dask's DaskTaskRunner)."
    )
    max_workers: int = Field(
        default=8, ge=1, le=64, description="Worker threads of the thread task runner (and "
        "threads per Dask worker); at least enabled connectors + 1 keeps every agency busy."
    )
    dask_address: str | None = Field(
        default=None, description="Address of a running Dask scheduler "
        "(`tcp://host:8786`) for `CME_TASK_RUNNER=dask`; unset: a temporary LocalCluster."
    )
    dask_workers: int = Field(
        default=2, ge=1, le=64, description="Worker processes of the temporary Dask "
        "LocalCluster."
    )
    retention_years: int = Field(
        default=6, ge=1, description="Years after closure before a closed case is anonymised."
    )
    log_level: str = Field(default="INFO", description="Log level of the `cme` CLI.")

    @field_validator("database_url")
    @classmethod
    def _a_supported_database(cls, value: str) -> str:
        return check_database_url(value)

    @field_validator("connectors")
    @classmethod
    def _installed_connectors(cls, value: list[str]) -> list[str]:
        # Checked here, not when the night first needs an agency: a quiet night with nothing
        # due would otherwise "succeed" with a misspelt agency for weeks.
        if not value:
            return value
        found = _installed_connectors(tuple(sys.path))
        unknown = [v for v in value if v not in found]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not installed; installed: "
                             + (", ".join(sorted(found)) or "none"))
        if len(set(value)) != len(value):
            raise ValueError("a connector is named twice")
        return value

    @field_validator("duty_inbox", "mail_from")
    @classmethod
    def _one_address(cls, value: str) -> str:
        return email_address(value)

    @field_validator("other_la_contacts")
    @classmethod
    def _la_code_to_address(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for code, address in value.items():
            if not re.fullmatch(r"\d{3}", code):
                raise ValueError(f"key {code!r} is not a 3-digit LA code")
            try:
                out[code] = email_address(address)
            except ValueError as exc:
                raise ValueError(f"LA {code}: {exc}") from None
        return out

    @field_validator("automatic_outcomes")
    @classmethod
    def _only_outcomes_that_may_be_automatic(cls, value: list[str]) -> list[str]:
        allowed = sorted(o.value for o in MAY_BE_AUTOMATIC)
        refused = [v for v in value if v not in allowed]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} cannot be automatic (a person decides it); choose from "
                + ", ".join(allowed)
            )
        return value


    def channel_options(self) -> ChannelOptions:
        """The typed options of ``CME_NOTIFICATION_CHANNEL`` from its settings.

        Raises :class:`~tasks.errors.ConfigError` with one line naming the wrong setting
        (:func:`get_settings` calls this, so a wrong option stops start-up)."""
        kind = self.notification_channel
        names = _CHANNEL_SETTINGS[kind]
        try:
            return channel_options(kind, **{opt: getattr(self, name)
                                            for opt, name in names.items()})
        except OptionError as exc:
            setting = _setting_name(names.get(exc.option, "notification_channel"))
            msg = str(exc).removeprefix(f"{exc.option}: ")
            raise ConfigError(f"setting {setting} is invalid: {msg} (the {kind} channel's "
                              "option)") from None


#: Channel → its option → the setting it comes from (named when the option is wrong).
_CHANNEL_SETTINGS: dict[str, dict[str, str]] = {
    "file": {"outbox_dir": "outbox_dir", "mail_from": "mail_from"},
    "smtp": {"host": "smtp_host", "port": "smtp_port", "username": "smtp_username",
             "password": "smtp_password", "starttls": "smtp_starttls",
             "mail_from": "mail_from"},
    "notify": {"api_key": "notify_api_key", "base_url": "notify_base_url",
               "template_ids": "notify_template_ids"},
}


@lru_cache(maxsize=4)
def _installed_connectors(_path: tuple[str, ...]) -> frozenset[str]:
    """Names in the ``cme.connectors`` entry-point group (not loaded: a broken one is
    reported by the registry, in one line, when it is used). Keyed on ``sys.path``, which is
    where a newly visible package would appear; scanning it costs tens of milliseconds."""
    from importlib.metadata import entry_points

    from connectors import ENTRY_POINT_GROUP

    return frozenset(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def email_address(value: str) -> str:
    """One email address, bare or as ``Name <address>``; returns the bare address.

    Raises ``ValueError`` (quoting the value: addresses are the LA's own contacts, never a
    child's data) for anything else, e.g. two addresses or a missing domain."""
    text = value.strip() if isinstance(value, str) else ""
    named = _NAMED_ADDRESS.fullmatch(text)
    address = named.group("address").strip() if named else text
    try:
        return str(validate_email(address, check_deliverability=False).normalized)
    except EmailNotValidError:
        raise ValueError(f"{value!r} is not one email address (write address@domain or "
                         "Name <address@domain>)") from None


_NAMED_ADDRESS = re.compile(r"[^<>@]*<(?P<address>[^<>]+)>")

#: Database → the drivers the pipeline runs on (synchronous DB-API drivers; models.db).
_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg", "psycopg2")}


def check_database_url(value: str) -> str:
    """``value`` if it is a SQLAlchemy URL of SQLite or PostgreSQL whose driver is installed.

    Raises ``ValueError`` naming what is wrong (never the password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError("not a database URL (sqlite:///cme.db or "
                         "postgresql://user:password@host/database)") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")  # as models.db does
    if url.get_backend_name() not in _DRIVERS:
        raise ValueError(f"database {url.get_backend_name()!r} is not supported (use "
                         "sqlite or postgresql)")
    try:
        dialect = url.get_dialect()
        if dialect.driver not in _DRIVERS[url.get_backend_name()]:
            raise ImportError(dialect.driver)
        dialect.import_dbapi()
    except (NoSuchModuleError, ImportError):
        raise ValueError(f"database driver {url.get_driver_name()!r} is not installed or not "
                         "supported (use postgresql:// or postgresql+psycopg://)") from None
    return value


def _setting_name(loc: object) -> str:
    return "CME_" + str(loc).upper()


def get_settings() -> Settings:
    """Read the settings now (not cached: the CLI and tests change the environment).

    Raises :class:`~tasks.errors.ConfigError` with one line naming the first wrong setting.
    """
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        name = _setting_name(first["loc"][0]) if first["loc"] else "CME_*"
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"setting {name} is invalid: {msg}") from None
    except SettingsError as exc:
        # pydantic-settings says 'error parsing value for field "x" from source ...' for a
        # JSON setting that is not JSON; the field is the setting.
        found = re.search(r'field "(\w+)"', str(exc))
        name = _setting_name(found.group(1)) if found else "CME_*"
        raise ConfigError(f"setting {name} is invalid: not valid JSON (write a JSON "
                          "object, e.g. {\"850\": \"cme@la.example.org\"})") from None
    settings.channel_options()  # the chosen channel's options, checked now: one line
    return settings
