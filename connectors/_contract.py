"""The connector contract: what an agency connector declares and implements."""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar, Generic, cast, get_args, get_origin

import httpx
from typing_extensions import TypeVar

from ._errors import PermanentError
from ._models import QUERY_FIELDS, Query, Result
from ._resilience import AgencyHTTP, CircuitBreaker, RateLimiter
from ._settings import ConnectorSettings, env_prefix
from .secrets import reveal

__all__ = ["CONTRACT_VERSION", "Connector", "SettingsT"]

#: Bumped when the contract changes incompatibly; the registry refuses other versions.
CONTRACT_VERSION = 1

#: The settings class of a connector: ``class GP(Connector[GPSettings])`` types
#: ``self.settings`` as ``GPSettings`` (a plain ``Connector`` has :class:`ConnectorSettings`).
SettingsT = TypeVar("SettingsT", bound=ConnectorSettings, default=ConnectorSettings,
                    covariant=True)


class Connector(ABC, Generic[SettingsT]):
    """Base class of every agency connector.

    A connector is small: build the request from the minimised :class:`Query`, send it with
    the :class:`AgencyHTTP` it is given, parse the answer into a :class:`Result`. Retries,
    rate limits, the concurrency cap, the circuit breaker, size caps and the host allow-list
    are applied by ``AgencyHTTP``; errors it raises become error results in the runner.

    Class attributes to set:

    - ``name``: registry name, ``[a-z][a-z0-9_]*`` (also the ``CME_<NAME>_`` settings prefix)
    - ``version``: the connector's own version, recorded on every check
    - ``agency``: a human label for the agency
    - ``fields``: the subject fields it needs — nothing else reaches it (data minimisation)
    - ``rate_limit`` (requests/s) and ``max_concurrency`` (requests in flight)
    - ``deferred``: ``True`` if the agency answers later (implement ``submit``/``poll``),
      ``False`` for request/response (implement ``search``)
    - ``official``: ``True`` only if the agency answers a formal request from its own
      statutory records (DWP, Border Force): the rulebook then treats its findings as strong
      like an identifier match (docs/connectors.md, "How the rulebook uses evidence")
    - ``settings_class``: a :class:`ConnectorSettings` subclass if it needs more settings;
      ``class MyConnector(Connector[MySettings])`` sets it and types ``self.settings``

    Immediate connectors implement ``search``; deferred ones ``submit`` (file the request,
    return ``Result.pending(reference, expected_by)``) and ``poll`` (the answer, or still
    pending). ``health`` may probe the agency; the default only checks configuration.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    agency: ClassVar[str]
    fields: ClassVar[frozenset[str]]
    rate_limit: ClassVar[float] = 10.0
    max_concurrency: ClassVar[int] = 10
    deferred: ClassVar[bool] = False
    official: ClassVar[bool] = False
    contract_version: ClassVar[int] = CONTRACT_VERSION
    settings_class: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    settings: SettingsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "settings_class" in cls.__dict__:
            return
        # ``Connector[MySettings]`` names the settings class once, for both the type checker
        # and the settings read from ``CME_<NAME>_*``.
        for base in cls.__dict__.get("__orig_bases__", ()):
            args = get_args(base)
            if (get_origin(base) is Connector and args and isinstance(args[0], type)
                    and issubclass(args[0], ConnectorSettings)):
                cls.settings_class = args[0]

    def __init__(self, settings: SettingsT | None = None) -> None:
        self.settings = (
            settings if settings is not None
            else cast(SettingsT, self.settings_class.for_connector(self.name))
        )
        self.breaker = CircuitBreaker(
            self.settings.circuit_threshold, self.settings.circuit_cooldown
        )
        self.limiter = RateLimiter(self.effective_rate_limit)

    # configuration ----------------------------------------------------------------------

    @property
    def effective_rate_limit(self) -> float:
        return self.settings.rate_limit or self.rate_limit

    @property
    def effective_max_concurrency(self) -> int:
        return self.settings.max_concurrency or self.max_concurrency

    def base_urls(self) -> list[str]:
        """Every base URL this connector calls (used for the host allow-list)."""
        return [self.settings.base_url] if self.settings.base_url else []

    def allowed_hosts(self) -> frozenset[str]:
        hosts = {(httpx.URL(u).host or "").lower() for u in self.base_urls()}
        return frozenset(h for h in hosts if h) | frozenset(self.settings.extra_hosts)

    def url(self, path: str) -> str:
        """``base_url`` + ``path``; a permanent error if the base URL is not configured."""
        base = self.settings.base_url
        if not base:
            raise PermanentError(
                f"{self.name}: CME_{self.name.upper()}_BASE_URL is not set", code="not_configured"
            )
        return base.rstrip("/") + "/" + path.lstrip("/")

    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <CME_<NAME>_API_KEY>`` if a key is set (the key may name a
        Prefect Secret block, ``prefect-secret:<block>``: see ``connectors/secrets.py``). Raises
        :class:`connectors.secrets.SecretBlockError` if that block cannot be read."""
        key = reveal(self.settings.api_key, setting=f"{env_prefix(self.name)}API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    # the work ---------------------------------------------------------------------------

    async def search(self, query: Query, http: AgencyHTTP) -> Result:
        raise NotImplementedError(f"{self.name} is deferred: use submit/poll")

    async def submit(self, query: Query, http: AgencyHTTP) -> Result:
        raise NotImplementedError(f"{self.name} answers immediately: use search")

    async def poll(self, agency_reference: str, http: AgencyHTTP) -> Result:
        raise NotImplementedError(f"{self.name} answers immediately: use search")

    async def health(self, http: AgencyHTTP) -> str:
        """Probe the agency; return a short PII-free status or raise a connector error."""
        if not self.base_urls():
            raise PermanentError(f"{self.name}: not configured", code="not_configured")
        return "configured (no probe defined)"

    # checks the registry runs ------------------------------------------------------------

    @classmethod
    def contract_problems(cls) -> list[str]:
        """What is wrong with this class's declaration, one line each (empty if nothing)."""
        problems: list[str] = []
        label = f"{cls.__module__}.{cls.__qualname__}"
        for attr in ("name", "version", "agency", "fields"):
            if not hasattr(cls, attr):
                problems.append(f"{label}: missing class attribute '{attr}'")
        if problems:
            return problems
        import re

        if not re.fullmatch(r"[a-z][a-z0-9_]*", cls.name):
            problems.append(f"{label}: name {cls.name!r} must match [a-z][a-z0-9_]*")
        if cls.contract_version != CONTRACT_VERSION:
            problems.append(
                f"{label}: contract version {cls.contract_version} != supported "
                f"{CONTRACT_VERSION}"
            )
        if not isinstance(cls.fields, frozenset) or not cls.fields:
            problems.append(f"{label}: 'fields' must be a non-empty frozenset")
        else:
            unknown = set(cls.fields) - QUERY_FIELDS
            if unknown:
                problems.append(f"{label}: unknown fields {sorted(unknown)}")
        if not (isinstance(cls.rate_limit, int | float) and cls.rate_limit > 0):
            problems.append(f"{label}: rate_limit must be > 0")
        if not (isinstance(cls.max_concurrency, int) and cls.max_concurrency >= 1):
            problems.append(f"{label}: max_concurrency must be >= 1")
        if cls.deferred:
            if cls.submit is Connector.submit or cls.poll is Connector.poll:
                problems.append(f"{label}: deferred connectors must implement submit and poll")
        elif cls.search is Connector.search:
            problems.append(f"{label}: immediate connectors must implement search")
        return problems
