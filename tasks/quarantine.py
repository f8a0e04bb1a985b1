"""The quarantine: input records that could not be accepted, kept with their reasons.

One place for referral intake (files and the Mendix feed) and the attendance import, so
both keep a record the same way: one row per line of a source, so a re-import or a re-run
after a crash adds nothing (README, Guarantees: re-imports are honest), with text the
database can store whatever bytes arrived.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from sqlmodel import Session

from models import QuarantinedRecord
from tasks.import_files import insert_ignoring_duplicate, quarantine_key

__all__ = ["quarantine", "storable"]

# Neither database keeps these in a text column (PostgreSQL refuses NUL; lone surrogates
# cannot be encoded): a quarantined record must still be stored, so they become U+FFFD, as
# undecodable bytes in a file already do.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD, so any database keeps it."""
    return _UNSTORABLE.sub("\ufffd", text)


def quarantine(session: Session, source: str, line_no: int | None, raw: str,
               reasons: list[str], ref: str | None = None, *,
               raw_sha256: str | None = None) -> bool:
    """Keep the record ``raw`` from line ``line_no`` of ``source`` with its reasons, in
    ``session``'s transaction; True if it was new. A line already kept (same source, line
    number and SHA-256 of the line) is left as it is. ``raw_sha256`` is the digest of the
    whole line when ``raw`` is only an excerpt of it."""
    source = storable(source)[:200]
    digest = raw_sha256 or hashlib.sha256(raw.encode("utf-8", errors="replace")).hexdigest()
    return insert_ignoring_duplicate(session, QuarantinedRecord, "record_key", {
        "source": source, "line_no": line_no, "raw": storable(raw),
        "reasons": [storable(r) for r in reasons],
        "mendix_reference": storable(ref)[:40] if ref else None,
        "raw_sha256": digest, "record_key": quarantine_key(source, line_no, digest),
        "received_at": datetime.now(UTC),
    })
