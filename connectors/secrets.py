"""Secrets kept in Prefect Secret blocks instead of environment variables.

Every secret setting — ``CME_SMTP_PASSWORD``, ``CME_NOTIFY_API_KEY``, ``CME_MENDIX_PASSWORD``
and each connector's ``CME_<NAME>_API_KEY`` — holds either the secret itself or a reference
to a Prefect Secret block::

    CME_NOTIFY_API_KEY=prefect-secret:cme-notify-api-key

The block is read from the Prefect API the process is configured for (``PREFECT_API_URL``)
at the moment the secret is used (a connector opening its channel, a notification channel
being built, the Mendix feed being read), in whichever process uses it (the worker's flow
run, a Dask worker, the CLI), and kept in that process's memory only, for the life of the
process (a rotated secret is read again by the next flow run's process). Settings that are not
secrets never need the Prefect API: `cme cases` works without it. A block that cannot be read
is an error naming the setting and the block, never a silent empty secret.

Prefect is imported only when a reference is used, so ``connectors/`` stays Prefect-free
for connector authors who never use blocks. It lives in ``connectors`` because a connector
reads its own API key through it (``Connector`` in ``connectors/_contract.py``); the tasks
resolve the other secrets with it and hand the text to the notification channels and the
Mendix feed (docs/architecture.md).
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any, cast

from pydantic import SecretStr

if TYPE_CHECKING:
    from prefect.blocks.system import Secret

__all__ = ["SECRET_BLOCK_PREFIX", "SecretBlockError", "block_name", "reveal"]

SECRET_BLOCK_PREFIX = "prefect-secret:"  # noqa: S105 - a marker, not a secret
# Prefect's block document names: lower-case letters, digits and dashes.
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


class SecretBlockError(ValueError):
    """A ``prefect-secret:`` reference could not be turned into a secret."""


def block_name(value: str) -> str | None:
    """The block name a setting refers to, or ``None`` if the value is the secret itself."""
    text = value.strip()
    if not text.startswith(SECRET_BLOCK_PREFIX):
        return None
    return text[len(SECRET_BLOCK_PREFIX):].strip()


def load_secret_block(name: str, *, setting: str) -> str:
    """The text held by the Prefect Secret block ``name`` (for the message: ``setting``)."""
    if not _BLOCK_NAME.fullmatch(name):
        raise SecretBlockError(
            f"{setting}: {name!r} is not a Prefect block name (lower-case letters, digits, "
            "dashes), in 'prefect-secret:<block name>'"
        )
    try:
        from prefect.blocks.system import Secret

        # `_sync=True`: a plain call even inside a running event loop (a flow's task).
        block = cast("Secret[Any]", Secret.load(name, _sync=True))  # type: ignore[call-arg]
        # Not `block.get()`: it JSON-decodes the text ("12345678" → 12345678, '"x"' → x).
        value = block.value.get_secret_value()
    except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
        raise SecretBlockError(
            f"{setting}: could not read the Prefect Secret block {name!r} "
            f"({type(exc).__name__}); create it in the Prefect UI (Blocks → Secret) or with "
            f"Secret(value=...).save({name!r}), and check PREFECT_API_URL"
        ) from None
    if not isinstance(value, str) or not value:
        raise SecretBlockError(
            f"{setting}: the Prefect Secret block {name!r} does not hold a text value"
        )
    return value


def reveal(secret: SecretStr | None, *, setting: str) -> str | None:
    """The secret's text: the value itself, or the Prefect Secret block it names.

    ``setting`` names it in errors (``CME_NOTIFY_API_KEY``). Raises :class:`SecretBlockError`
    when a named block cannot be read; the message never holds a secret.
    """
    if secret is None:
        return None
    raw = secret.get_secret_value()
    name = block_name(raw)
    if name is None:
        return raw
    return _load_once(name, setting)


@functools.lru_cache(maxsize=64)
def _load_once(name: str, setting: str) -> str:
    # One read per block and process: a night opens a channel per chunk. (Failures are not
    # cached: lru_cache keeps only returned values.)
    return load_secret_block(name, setting=setting)
