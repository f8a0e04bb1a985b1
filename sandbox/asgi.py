"""Small ASGI pieces for middleware that looks at a request before the app does.

Used by the sandbox's fault-and-log middleware and by the test fault harness's tap: both
read an agency request's body (to log it) and must then hand the same body on.
"""

from __future__ import annotations

from starlette.types import Message, Receive

__all__ = ["read_body", "replay_body"]


async def read_body(receive: Receive) -> bytes:
    """The whole request body, read from ``receive`` up to its last chunk."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def replay_body(body: bytes, then: Receive | None = None) -> Receive:
    """A ``receive`` for the wrapped app: ``body`` once, as one message; after that each
    call goes to ``then`` (the real connection), or, with no ``then``, is a disconnect."""
    replayed = False

    async def receive() -> Message:
        nonlocal replayed
        if replayed:
            if then is not None:
                return await then()
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
