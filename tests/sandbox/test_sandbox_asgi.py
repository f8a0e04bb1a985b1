"""The ASGI body helpers the sandbox middleware and the fault tap share."""

from __future__ import annotations

from starlette.types import Message

from sandbox.asgi import read_body, replay_body


def _chunks(*parts: bytes) -> list[Message]:
    return [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)]


async def test_read_body_joins_every_chunk_and_stops_at_the_last() -> None:
    pending = _chunks(b'{"surname": ', b'"Quill', b'feather"}') + [{"type": "http.disconnect"}]

    async def receive() -> Message:
        return pending.pop(0)

    assert await read_body(receive) == b'{"surname": "Quillfeather"}'
    assert pending == [{"type": "http.disconnect"}]  # nothing read past the body


async def test_replay_body_gives_the_body_once_then_a_disconnect() -> None:
    replay = replay_body(b"abc")
    assert await replay() == {"type": "http.request", "body": b"abc", "more_body": False}
    assert await replay() == {"type": "http.disconnect"}


async def test_replay_body_then_hands_on_to_the_real_connection() -> None:
    async def real() -> Message:
        return {"type": "http.disconnect", "from": "connection"}

    replay = replay_body(b"", then=real)
    assert (await replay())["type"] == "http.request"
    assert await replay() == {"type": "http.disconnect", "from": "connection"}
