"""Which HTTP transport carries the agencies' requests, and how its failures are classified.

``CME_HTTP_TRANSPORT`` picks it: ``aiohttp`` (the default: ``httpx-aiohttp``'s transport,
aiohttp's HTTP/1.1 client under the httpx API) or ``httpx`` (httpx's own, on httpcore). On a
2-core machine the client's CPU per request decides a night's length, and aiohttp spends
far less of it per request than httpcore (README, "Performance"). Connectors see the httpx
API either way; the resilience layer (``_resilience.py``) sees httpx exceptions either way.

httpx-aiohttp maps aiohttp's errors onto httpx's, but not as httpx itself would raise them:
a refused connection or a reset comes out as ``httpx.ConnectTimeout`` (it maps every
``aiohttp.ClientConnectionError`` to it), and an unreadable status line or header escapes
as a raw ``aiohttp.ClientResponseError``. :func:`aiohttp_failure` reads the aiohttp error
itself so that a failure ends with the same error code on both transports (proved over
real HTTP by tests/connectors/test_conn_transport.py and the fault matrix, tests/faults/).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal, get_args

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HTTP_TRANSPORTS", "HttpTransport", "TransportSettings", "aiohttp_failure",
           "http_transport", "make_transport"]

HttpTransport = Literal["aiohttp", "httpx"]
#: The values ``CME_HTTP_TRANSPORT`` may take.
HTTP_TRANSPORTS: tuple[str, ...] = get_args(HttpTransport)


class TransportSettings(BaseSettings):
    """``CME_HTTP_TRANSPORT``: the transport of every connector's client."""

    model_config = SettingsConfigDict(env_prefix="CME_", extra="ignore")

    http_transport: HttpTransport = Field(
        default="aiohttp", description="HTTP transport for the agencies: `aiohttp` "
        "(httpx-aiohttp, the default: less CPU per request) or `httpx` (httpx's own).")


def http_transport() -> HttpTransport:
    """The configured transport. Raises ``ValueError`` with one line naming the setting."""
    try:
        return TransportSettings().http_transport
    except ValidationError:
        raise ValueError(
            f"setting CME_HTTP_TRANSPORT is invalid: use one of {', '.join(HTTP_TRANSPORTS)}"
        ) from None


def make_transport(kind: HttpTransport, *, verify: ssl.SSLContext,
                   limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """A transport of ``kind`` with this TLS context and pool size.

    Built here rather than left to ``httpx.AsyncClient``: a client given a transport does
    not pass its ``verify`` or ``limits`` on to it, so both are set on the transport itself.
    """
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(verify=verify, limits=limits)


def aiohttp_failure(exc: BaseException) -> type[httpx.TransportError] | None:
    """The httpx exception httpx itself would have raised for the aiohttp error behind
    ``exc`` (None: ``exc`` did not come from aiohttp, or httpx-aiohttp mapped it as httpx
    would). ``exc`` is the httpx exception httpx-aiohttp raised (its cause is aiohttp's), or
    an aiohttp error it let through unmapped."""
    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) else exc
    if cause is None or not type(cause).__module__.startswith("aiohttp"):
        return None
    import aiohttp

    if isinstance(cause, aiohttp.InvalidURL):
        return None  # mapped to httpx.UnsupportedProtocol, as httpx itself raises
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout  # connecting, or waiting for a pooled connection
    if isinstance(cause, asyncio.TimeoutError):
        return httpx.ReadTimeout  # SocketTimeoutError, ServerTimeoutError: reading
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError  # refused, unreachable, TLS verification failed
    if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                  | aiohttp.ClientResponseError):
        # closed before an answer, a body cut short, a status line or header that is not
        # HTTP: all RemoteProtocolError in httpx
        return httpx.RemoteProtocolError
    if isinstance(cause, aiohttp.ClientError):
        return httpx.ReadError  # reset by peer (ClientOSError) and the rest of the send
    return None
