"""Referral files: which files intake may open, and reading them in bounded memory.

Errors::

    CmeDataError
    └── ImportFileError    the file may not be imported (why, in one line; nothing read)

Which files (README, "Importing a file"):

- a file named in the intake flows' ``file`` parameter (the Prefect UI, a deployment) must
  be a regular file inside the import folder ``CME_IMPORT_DIR`` once every symbolic link is
  resolved: ``/etc/passwd``, ``/proc/self/environ`` or a link pointing out of the folder is
  refused before a byte is read;
- a file an operator names on the command line (``cme import FILE``, ``cme demo``) may be
  anywhere the operator can read, but must still be a regular file outside the kernel's
  pseudo-filesystems (``/proc``, ``/sys``, ``/dev``);
- either way at most ``CME_IMPORT_MAX_MB``; a file that grows past that while being read
  stops there with an error.

Reading: one line at a time, never more than ``max_line_bytes + 1`` bytes of a line in
memory. A longer line is not parsed: it becomes an :class:`OversizedLine` (its first
:data:`EXCERPT_BYTES` bytes, its SHA-256 and its size) and is quarantined as such.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from models.errors import CmeDataError

__all__ = [
    "EXCERPT_BYTES",
    "ImportFileError",
    "OversizedLine",
    "insert_ignoring_duplicate",
    "open_import_file",
    "quarantine_key",
    "read_lines",
]

#: How much of an oversized line the quarantine keeps.
EXCERPT_BYTES = 1024
_CHUNK = 64 * 1024
_PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


class ImportFileError(CmeDataError):
    """A file intake may not read; the message says why in one line."""


@dataclass(frozen=True)
class OversizedLine:
    """A line longer than the record limit, refused before parsing."""

    excerpt: str
    sha256: str
    size: int
    limit: int

    def reason(self) -> str:
        return (f"(record): {self.size} bytes, larger than {self.limit // 1024} KiB; not read; "
                f"kept as its first {EXCERPT_BYTES} bytes and SHA-256 {self.sha256}")


def quarantine_key(source: str, line_no: int | None, raw_sha256: str) -> str:
    """The quarantine's one-row-per-line key (also computed by migration 0004)."""
    text = f"{source}\x00{'' if line_no is None else line_no}\x00{raw_sha256}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def insert_ignoring_duplicate(session: Session, table_cls: Any, key: str,
                              values: dict[str, Any]) -> bool:
    """Insert a row unless one with the same unique ``key`` exists; True if inserted.

    ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL, so two imports racing on one line
    neither fail nor duplicate it.
    """
    table = table_cls.__table__
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = (insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
                .returning(table.c.id))
        return session.exec(stmt).first() is not None
    try:
        with session.begin_nested():
            session.exec(sa_insert(table).values(**values))
    except IntegrityError:
        return False
    return True


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def open_import_file(path: str | os.PathLike[str], *, import_dir: str | os.PathLike[str],
                     max_bytes: int, confined: bool) -> _Capped:
    """Open a referral file for reading, or raise :class:`ImportFileError`.

    ``confined``: the file must be inside ``import_dir`` (symbolic links resolved); a
    relative path is taken relative to ``import_dir``. Not confined (an operator's own
    command): any path, but never a pseudo-file. Either way: a regular file of at most
    ``max_bytes``. The checks are made on the opened file, so a file swapped after the
    check is not read instead.
    """
    given = Path(path)
    folder = Path(import_dir).resolve()
    target = (folder / given) if confined and not given.is_absolute() else given
    try:
        real = target.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ImportFileError(f"cannot import {given}: no such file") from None
    if confined and not _inside(real, folder):
        raise ImportFileError(
            f"cannot import {given}: only files inside the import folder (CME_IMPORT_DIR) "
            "may be imported from a flow; copy it there")
    if any(_inside(real, p) for p in _PSEUDO_FILESYSTEMS):
        raise ImportFileError(f"cannot import {given}: not a regular file")
    try:
        # O_NONBLOCK: a FIFO must not hang the flow before fstat refuses it.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(real, flags)
    except OSError as exc:
        raise ImportFileError(f"cannot import {given}: cannot open it ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImportFileError(f"cannot import {given}: not a regular file")
        if st.st_size > max_bytes:
            raise ImportFileError(
                f"cannot import {given}: {st.st_size // (1024 * 1024)} MB is more than "
                f"CME_IMPORT_MAX_MB ({max_bytes // (1024 * 1024)} MB)")
        return _Capped(os.fdopen(fd, "rb"), max_bytes, str(given))
    except BaseException:
        os.close(fd)
        raise


class _Capped:
    """A binary file that raises :class:`ImportFileError` past ``max_bytes`` (a file that
    grows while it is read)."""

    def __init__(self, fh: IO[bytes], max_bytes: int, name: str) -> None:
        self._fh, self._left, self._name, self._max = fh, max_bytes, name, max_bytes

    def readline(self, size: int = -1) -> bytes:
        data = self._fh.readline(size)
        self._left -= len(data)
        if self._left < 0:
            raise ImportFileError(
                f"cannot import {self._name}: it grew past CME_IMPORT_MAX_MB "
                f"({self._max // (1024 * 1024)} MB) while being read")
        return data

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> _Capped:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_lines(fh: Any, *, max_line_bytes: int) -> Iterator[tuple[int, str | OversizedLine]]:
    """``(line number, text)`` for each non-blank line of a binary file, in bounded memory.

    Undecodable bytes become U+FFFD; a byte-order mark at the start of the file is dropped.
    A line longer than ``max_line_bytes`` is yielded as an :class:`OversizedLine`, never
    held whole.
    """
    n = 0
    while True:
        raw = fh.readline(max_line_bytes + 1)
        if not raw:
            return
        n += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            yield n, _oversized(fh, raw, max_line_bytes)
            continue
        text = raw.decode("utf-8-sig" if n == 1 else "utf-8", errors="replace").strip()
        if text:
            yield n, text


def _oversized(fh: Any, head: bytes, limit: int) -> OversizedLine:
    # The size and hash are of the line without its line ending, as a reader would copy it.
    digest = hashlib.sha256(head)
    size = len(head)
    while True:
        more = fh.readline(_CHUNK)
        if not more:
            break
        end = more.endswith(b"\n")
        if end:
            more = more.rstrip(b"\r\n")
        digest.update(more)
        size += len(more)
        if end:
            break
    excerpt = head[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    return OversizedLine(excerpt=excerpt, sha256=digest.hexdigest(), size=size, limit=limit)
