"""Connector errors: what can go wrong when asking an agency, and whether trying again helps.

Every error carries a ``kind`` (``transient`` | ``permanent`` | ``circuit_open``), a short
stable ``code`` and a message written by this package — never text copied from a request or
a response, so no personal data can ride along into logs, check rows or the Prefect UI::

    ConnectorError
     ├── TransientError            the agency or the network: worth asking again later
     │    ├── AgencyUnavailable    5xx / 408 after the retries ran out   (code http_<status>)
     │    ├── AgencyTimeout        connect/read/write/pool timeout       (code timeout)
     │    ├── ConnectionFailed     refused, reset, keep-alive race       (code connection_error)
     │    └── RateLimited          429 past the retries or Retry-After over the cap
     │                                                                   (code rate_limited)
     ├── CircuitOpen               the breaker refused to call           (code circuit_open)
     └── PermanentError            retrying will not help until a person changes something
          ├── RequestRejected      4xx other than 408/429                (code http_<status>)
          ├── MalformedResponse    a body we cannot parse                (code malformed_response)
          ├── ResponseTooLarge     body over the size cap                (code response_too_large)
          └── HostNotAllowed       URL outside the connector's allow-list (code host_not_allowed)

    RegistryError                  configuration: discovery/enabling problems (not a check error)
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["transient", "permanent", "circuit_open"]


class ConnectorError(Exception):
    """Base of every error a connector check can end in. ``message`` is PII-free."""

    kind: ErrorKind = "permanent"
    code: str = "connector_error"

    def __init__(
        self, message: str, *, code: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        if code is not None:
            self.code = code


class TransientError(ConnectorError):
    kind: ErrorKind = "transient"
    code = "transient"
    #: False when retrying now is pointless (e.g. Retry-After beyond the cap).
    retryable: bool = True


class AgencyUnavailable(TransientError):
    code = "agency_unavailable"


class AgencyTimeout(TransientError):
    code = "timeout"


class ConnectionFailed(TransientError):
    code = "connection_error"


class RateLimited(TransientError):
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        retryable: bool = True,
        code: str | None = None,
        status_code: int | None = 429,
    ) -> None:
        super().__init__(message, code=code, status_code=status_code)
        self.retry_after = retry_after
        self.retryable = retryable


class CircuitOpen(ConnectorError):
    kind: ErrorKind = "circuit_open"
    code = "circuit_open"


class PermanentError(ConnectorError):
    kind: ErrorKind = "permanent"
    code = "permanent"


class RequestRejected(PermanentError):
    code = "request_rejected"


class MalformedResponse(PermanentError):
    code = "malformed_response"


class ResponseTooLarge(PermanentError):
    code = "response_too_large"


class HostNotAllowed(PermanentError):
    code = "host_not_allowed"


class RegistryError(Exception):
    """Discovery or enabling went wrong; ``problems`` lists every one found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"connector registry: {len(self.problems)} problem(s):\n{lines}")
