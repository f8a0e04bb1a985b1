"""Settings, read from ``CME_*`` environment variables (and a ``.env`` file if present).

Every field here is documented in the README's configuration table; a test keeps the two in
step. Secrets are ``SecretStr``: they print as ``**********``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from policy import MAY_BE_AUTOMATIC

__all__ = ["Settings", "get_settings"]


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
    connectors: Annotated[list[str], NoDecode] = Field(
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
    automatic_outcomes: Annotated[list[str], NoDecode] = Field(
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

    @field_validator("connectors", "automatic_outcomes", mode="before")
    @classmethod
    def _split_connectors(cls, value: object) -> object:
        # The environment gives "other_la, housing"; code may give a list.
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

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


def get_settings() -> Settings:
    """Read the settings now (not cached: the CLI and tests change the environment)."""
    return Settings()
