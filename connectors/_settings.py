"""Per-connector settings, read from ``CME_<NAME>_*`` environment variables."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["CommaList", "ConnectorSettings", "RegistrySettings", "env_prefix"]


def split_commas(value: object) -> object:
    """``"a, b,,c "`` → ``["a", "b", "c"]``; a list (given in code) is left as it is."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


#: The one type of every list setting (``CME_CONNECTORS``, ``CME_AUTOMATIC_OUTCOMES``,
#: ``CME_<NAME>_EXTRA_HOSTS``): written ``a, b, c`` in the environment — not JSON — items
#: stripped and empty ones dropped; a list in code.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]


def env_prefix(connector_name: str) -> str:
    """``other_la`` → ``CME_OTHER_LA_``."""
    return f"CME_{connector_name.upper().replace('-', '_')}_"


class ConnectorSettings(BaseSettings):
    """Settings every connector has. Subclass to add agency-specific ones.

    Read with :meth:`for_connector` so the prefix is ``CME_<NAME>_``: e.g.
    ``CME_HOUSING_BASE_URL``, ``CME_HOUSING_API_KEY`` (a secret: never printed),
    ``CME_HOUSING_TIMEOUT``.
    """

    model_config = SettingsConfigDict(env_prefix="CME_CONNECTOR_", extra="ignore")

    base_url: str | None = Field(default=None, description="Agency API base URL (https).")
    api_key: SecretStr | None = Field(default=None, description="Bearer token for the agency.")
    timeout: float = Field(default=10.0, gt=0, description="Read/write timeout per attempt, s.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Connect timeout, s.")
    max_attempts: int = Field(default=4, ge=1, le=10, description="Tries per HTTP request.")
    backoff_initial: float = Field(default=0.5, ge=0, description="First backoff, s.")
    backoff_max: float = Field(default=8.0, ge=0, description="Longest backoff, s.")
    retry_after_cap: float = Field(
        default=30.0, ge=0, description="Longest Retry-After honoured; longer gives up."
    )
    max_response_bytes: int = Field(default=2_000_000, ge=1024, description="Body size cap.")
    rate_limit: float | None = Field(default=None, gt=0, description="Override requests/s.")
    max_concurrency: int | None = Field(default=None, ge=1, description="Override in-flight cap.")
    circuit_threshold: int = Field(
        default=5, ge=1, description="Consecutive transient failures that open the circuit."
    )
    circuit_cooldown: float = Field(default=60.0, ge=0, description="Open → half-open after, s.")
    extra_hosts: CommaList = Field(
        default_factory=list, description="More hosts the connector may call (comma list)."
    )
    allow_http: bool = Field(
        default=False, description="Allow plain http (the sandbox/loopback only)."
    )
    ca_bundle: str | None = Field(default=None, description="CA bundle path (TLS stays on).")

    @field_validator("extra_hosts")
    @classmethod
    def _hosts_in_lower_case(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]

    @classmethod
    def for_connector(cls, name: str, **values: Any) -> Self:
        """Read the settings of connector ``name`` from ``CME_<NAME>_*`` (``values`` win)."""
        return cls(_env_prefix=env_prefix(name), **values)


class RegistrySettings(BaseSettings):
    """``CME_CONNECTORS``: the comma-separated names of the connectors to enable."""

    model_config = SettingsConfigDict(env_prefix="CME_", extra="ignore")

    connectors: CommaList = Field(default_factory=list)
