"""A response body read within the size cap, decoded bytes included.

httpx decodes each network chunk whole, so one 64 KiB chunk of a gzip bomb is ~64 MB in
memory before a cap counting decoded bytes can look at it. Here the decompressor is asked
for no more than the cap still allows, so a body never holds more than the cap, whatever
the compression ratio. ``gzip`` and ``deflate`` are decoded (what :data:`ACCEPT_ENCODING`
asks for); any other content coding is a :class:`MalformedResponse`.
"""

from __future__ import annotations

import zlib

from ._errors import MalformedResponse, ResponseTooLarge

__all__ = ["ACCEPT_ENCODING", "BoundedBody"]

#: What the connectors ask agencies for (httpx would add ``br``/``zstd`` when installed).
ACCEPT_ENCODING = "gzip, deflate"


class BoundedBody:
    """Feed raw chunks; :meth:`content` is the decoded body. Raises connector errors."""

    def __init__(self, content_encoding: str | None, cap: int, name: str) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise MalformedResponse(f"{name}: unsupported content encoding")
        self._coding = codings[0] if codings else None
        self._cap = cap
        self._name = name
        self._size = 0
        self._chunks: list[bytes] = []
        self._first = True
        wbits = zlib.MAX_WBITS | 16 if self._coding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits) if self._coding else None

    def _too_large(self) -> ResponseTooLarge:
        return ResponseTooLarge(f"{self._name}: response over {self._cap} bytes")

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._cap:
            raise self._too_large()
        self._chunks.append(data)

    def feed(self, raw: bytes) -> None:
        if self._inflater is None:
            self._keep(raw)
            return
        limit = self._cap + 1 - self._size  # >= 1: zlib reads max_length=0 as "no limit"
        try:
            out = self._inflater.decompress(raw, limit)
        except zlib.error:
            if not (self._first and self._coding == "deflate"):
                raise MalformedResponse(f"{self._name}: response could not be decoded") from None
            # "deflate" is sometimes sent without its zlib wrapper (as httpx also allows)
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                out = self._inflater.decompress(raw, limit)
            except zlib.error:
                raise MalformedResponse(
                    f"{self._name}: response could not be decoded") from None
        self._first = False
        if self._inflater.unconsumed_tail:
            raise self._too_large()
        self._keep(out)

    def content(self) -> bytes:
        if self._inflater is not None:
            try:
                self._keep(self._inflater.flush())
            except zlib.error:
                raise MalformedResponse(f"{self._name}: response could not be decoded") from None
        return b"".join(self._chunks)
