"""Outbound channels: a ``.eml`` outbox folder, an SMTP server, GOV.UK Notify.

A channel has one job: deliver one rendered message, or say whether an earlier attempt was
delivered. Retries, back-off and the outbox states live once, in :mod:`notifications.dispatch`.

    send(msg)   -> provider id              or raises (see notifications.errors):
                                              TransientSendError    try again later
                                              PermanentSendError    never retry
                                              OutcomeUnknownError   may have gone; ask a person
    lookup(msg) -> provider id | None       was ``msg`` (same idempotency key) delivered before?
                                              raises OutcomeUnknownError if it cannot be told

==========  ===========================================  =====================================
channel     deterministic identity                       lookup
==========  ===========================================  =====================================
file        file name and Message-ID from the key        the file exists
smtp        Message-ID from the key                      cannot be asked (``can_lookup=False``)
notify      ``reference`` = the idempotency key          ``GET /v2/notifications?reference=``
==========  ===========================================  =====================================

SMTP is therefore **at most once**: a message whose outcome is unknown (a crash between the
outbox saying ``sending`` and the server's reply, or a connection cut during ``DATA``) is never
resent automatically; the dispatcher marks it ``failed`` for an officer to check.

Error messages carry the channel, the status or reply code and an error class, never the
recipient, the content or a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import jwt
from pydantic import SecretStr

from models.enums import NotificationChannel, Template
from notifications.errors import (
    OutcomeUnknownError,
    PermanentSendError,
    SendError,
    TransientSendError,
)

__all__ = [
    "DEFAULT_MAIL_FROM",
    "DEFAULT_NOTIFY_BASE_URL",
    "Channel",
    "FileChannel",
    "NotifyChannel",
    "OutgoingMessage",
    "SmtpChannel",
    "channel_from_config",
    "message_id_for",
]

#: Never follow a link planted under a temporary name (not every platform has the flag).
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

DEFAULT_MAIL_FROM = "cme-team@la.example.org"
DEFAULT_NOTIFY_BASE_URL = "https://api.notifications.service.gov.uk"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message ready to go: what the dispatcher hands a channel.

    ``personalisation`` is the validated outbox personalisation (GOV.UK Notify templates use
    it, together with ``subject`` and ``body``); email channels send ``subject``/``body``.
    """

    idempotency_key: str
    template: Template
    recipient: str = field(repr=False)
    subject: str = field(repr=False)
    body: str = field(repr=False)
    personalisation: Mapping[str, Any] = field(default_factory=dict, repr=False)
    sender_name: str | None = None


@runtime_checkable
class Channel(Protocol):
    """What the dispatcher needs from a channel."""

    #: The outbox ``channel`` value this channel sends (rows of other channels are left alone).
    kind: ClassVar[NotificationChannel]
    #: Whether :meth:`lookup` can tell if a message was delivered.
    can_lookup: ClassVar[bool]

    async def send(self, msg: OutgoingMessage) -> str:
        """Deliver ``msg``; return the provider's id for it."""
        ...

    async def lookup(self, msg: OutgoingMessage) -> str | None:
        """The provider id if ``msg`` was already delivered, None if it certainly was not.

        Raises :class:`OutcomeUnknownError` when the channel cannot tell, and
        :class:`TransientSendError` when it could not ask right now.
        """
        ...


def _key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _domain(mail_from: str) -> str:
    domain = mail_from.rpartition("@")[2].strip(" >")
    return domain if re.fullmatch(r"[A-Za-z0-9.-]{1,100}", domain or "") else "cme.invalid"


def message_id_for(idempotency_key: str, mail_from: str = DEFAULT_MAIL_FROM) -> str:
    """The RFC 5322 Message-ID for a key: the same key always gives the same id, so a
    recipient (or a person checking a mailbox) can recognise a repeat."""
    return f"<cme.{_key_digest(idempotency_key)[:32]}@{_domain(mail_from)}>"


def _build_email(msg: OutgoingMessage, mail_from: str, now: datetime | None = None) -> EmailMessage:
    em = EmailMessage(policy=SMTP_POLICY)
    em["From"] = formataddr((msg.sender_name, mail_from)) if msg.sender_name else mail_from
    em["To"] = msg.recipient
    em["Subject"] = msg.subject
    em["Date"] = format_datetime(now or datetime.now(UTC))
    em["Message-ID"] = message_id_for(msg.idempotency_key, mail_from)
    em["Auto-Submitted"] = "auto-generated"
    em["X-CME-Template"] = msg.template.value
    # Quoted-printable keeps the message 7-bit whatever the school's name contains.
    em.set_content(msg.body, cte="quoted-printable")
    return em


def _check_recipient(msg: OutgoingMessage, channel: str) -> None:
    if not msg.recipient or "@" not in msg.recipient or re.search(r"[\s<>,;]", msg.recipient):
        raise PermanentSendError(f"{channel}: recipient is not a single email address")


# --- file ------------------------------------------------------------------------------------


class FileChannel:
    """One RFC 5322 ``.eml`` file per message in ``outbox_dir`` (the default channel).

    The file name comes from the idempotency key (a readable, sanitised prefix plus a hash),
    so sending the same key twice never writes a second file, and ``lookup`` is "does the
    file exist". Files are written to a temporary name and renamed into place, so a reader
    (or a crash) never sees half a message.
    """

    kind: ClassVar[NotificationChannel] = NotificationChannel.file
    can_lookup: ClassVar[bool] = True

    def __init__(
        self, outbox_dir: str | os.PathLike[str], *, mail_from: str = DEFAULT_MAIL_FROM
    ) -> None:
        self.outbox_dir = Path(outbox_dir)
        self.mail_from = mail_from

    def __repr__(self) -> str:
        return f"FileChannel(outbox_dir={str(self.outbox_dir)!r})"

    def path_for(self, idempotency_key: str) -> Path:
        """Where the message for ``idempotency_key`` is (or will be) written."""
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", idempotency_key).strip("._")[:80]
        return self.outbox_dir / f"{readable}--{_key_digest(idempotency_key)[:16]}.eml"

    async def send(self, msg: OutgoingMessage) -> str:
        _check_recipient(msg, "file")
        return await asyncio.to_thread(self._write, msg)

    async def lookup(self, msg: OutgoingMessage) -> str | None:
        return await asyncio.to_thread(self._lookup, msg.idempotency_key)

    def _lookup(self, key: str) -> str | None:
        path = self.path_for(key)
        if path.exists():
            return path.name
        # Not delivered: a half-written copy is what a crash left of an earlier attempt (the
        # dispatcher asks only about a row whose claim is its own or has expired).
        self._remove_leftovers(key)
        return None

    def _part_prefix(self, key: str) -> str:
        return f".tmp-{_key_digest(key)[:16]}-"

    def _part_path(self, key: str) -> Path:
        """The one temporary name this key's message is written under before the rename."""
        return self.outbox_dir / f"{self._part_prefix(key)}w.part"

    def _remove_leftovers(self, key: str) -> None:
        """Every half-written copy of this key's message, whatever its name: the glob also
        finds copies an earlier release left under random names. Only the crash-recovery
        path (``lookup``) calls it; a first send removes just :meth:`_part_path`, since a
        glob of the whole folder per message made a night's dispatch quadratic."""
        for part in self.outbox_dir.glob(f"{self._part_prefix(key)}*.part"):
            part.unlink(missing_ok=True)

    def _write(self, msg: OutgoingMessage) -> str:
        path = self.path_for(msg.idempotency_key)
        if path.exists():
            return path.name  # already delivered: overwrite nothing
        data = _build_email(msg, self.mail_from).as_bytes()
        try:
            # 0700 whatever the umask: messages name children's initials and references.
            # The file itself is made 0600 below, and the rename keeps that mode.
            self.outbox_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Not named *.eml: a crash before the rename leaves this file behind, and whatever
            # reads outbox/*.eml (a mail pickup folder) must not take it as a second copy. Named
            # from the key, so the next attempt at this message removes it. The sender holds
            # the row's claim, so a copy under this name is an interrupted attempt's own.
            tmp = self._part_path(msg.idempotency_key)
            tmp.unlink(missing_ok=True)
            # 0600, created afresh and never through a link.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            # A full disk or a missing mount may clear up; the row is retried with back-off.
            raise TransientSendError(
                f"file: could not write the outbox file ({type(exc).__name__})"
            ) from None
        return path.name


# --- SMTP ------------------------------------------------------------------------------------


class SmtpChannel:
    """Send through an SMTP server with :mod:`smtplib` (in a worker thread).

    Reply codes decide: 4xx before the message body is accepted is transient, 5xx permanent.
    If the connection drops or times out *during* ``DATA`` the server may have taken the
    message, so :class:`OutcomeUnknownError` is raised and nothing is retried automatically.
    ``lookup`` cannot ask an SMTP server anything: it always raises OutcomeUnknownError.
    """

    kind: ClassVar[NotificationChannel] = NotificationChannel.smtp
    can_lookup: ClassVar[bool] = False

    def __init__(
        self,
        *,
        host: str,
        port: int = 25,
        username: str | None = None,
        password: SecretStr | str | None = None,
        starttls: bool = False,
        mail_from: str = DEFAULT_MAIL_FROM,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        # The password's text: a Prefect Secret block it named was read by whoever built the
        # channel (tasks.dispatch.channel_from_config): channels never read settings.
        self._password = SecretStr(password) if isinstance(password, str) else password
        self.starttls = starttls
        self.mail_from = mail_from
        self.timeout = timeout

    def __repr__(self) -> str:
        return (
            f"SmtpChannel(host={self.host!r}, port={self.port}, starttls={self.starttls}, "
            f"auth={'yes' if self.username else 'no'})"
        )

    async def send(self, msg: OutgoingMessage) -> str:
        _check_recipient(msg, "smtp")
        return await asyncio.to_thread(self._send, msg)

    async def lookup(self, msg: OutgoingMessage) -> str | None:
        raise OutcomeUnknownError("smtp: a server cannot be asked whether a message was delivered")

    @staticmethod
    def _reply(code: int, stage: str) -> SendError:
        cls = TransientSendError if 400 <= code < 500 else PermanentSendError
        return cls(f"smtp: server refused {stage} ({code})", status=code)

    def _send(self, msg: OutgoingMessage) -> str:
        em = _build_email(msg, self.mail_from)
        data = em.as_bytes()
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientSendError(f"smtp: could not connect ({type(exc).__name__})") from None
        try:
            self._prepare(smtp, msg)
            try:
                code, _ = smtp.data(data)
            except smtplib.SMTPResponseException as exc:
                # The server answered: it did not take the message.
                raise self._reply(exc.smtp_code, "the message") from None
            except (OSError, smtplib.SMTPException) as exc:
                raise OutcomeUnknownError(
                    f"smtp: connection lost while sending the message ({type(exc).__name__}); "
                    "it may have been delivered"
                ) from None
            if code != 250:
                # A definite reply: the server did not take the message.
                raise self._reply(code, "the message")
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return str(em["Message-ID"])

    def _prepare(self, smtp: smtplib.SMTP, msg: OutgoingMessage) -> None:
        """EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO: nothing is delivered if any fails."""
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username:
                secret = self._password.get_secret_value() if self._password else ""
                smtp.login(self.username, secret)
            code, _ = smtp.mail(self.mail_from)
            if code != 250:
                raise self._reply(code, "the sender")
            code, _ = smtp.rcpt(msg.recipient)
            if code not in (250, 251):
                raise self._reply(code, "the recipient")
        except SendError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentSendError(
                f"smtp: login refused ({exc.smtp_code})", status=exc.smtp_code
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise PermanentSendError(
                "smtp: the server does not support a required extension"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise self._reply(exc.smtp_code, "the session") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientSendError(f"smtp: connection failed ({type(exc).__name__})") from None


# --- GOV.UK Notify ---------------------------------------------------------------------------

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_NOTIFY_KEY = re.compile(rf".+-({_UUID})-({_UUID})")
_TRANSIENT_STATUS = frozenset({408, 425, 429})


def _personalisation_for_notify(msg: OutgoingMessage) -> dict[str, Any]:
    """Notify placeholders take strings or lists of strings: send the rendered subject and
    body (a generic ``((subject))``/``((body))`` template works) plus each scalar field."""
    out: dict[str, Any] = {"subject": msg.subject, "body": msg.body}
    for key, value in msg.personalisation.items():
        if isinstance(value, str):
            out[key] = value
    return out


class NotifyChannel:
    """GOV.UK Notify's REST API (``POST /v2/notifications/email``) over httpx.

    Auth is a fresh JWT per request: HS256, ``iss`` = the service id, ``iat`` = now, signed
    with the secret key; both are parsed from the end of the API key
    ``{key_name}-{service_id}-{secret_key}``. The notification's ``reference`` is the
    idempotency key, so ``lookup`` asks ``GET /v2/notifications?reference=...``. Notify
    keeps notifications for its data retention period (7 days by default), which bounds how
    late a lookup can find one.

    429, 408, 5xx, timeouts and connection errors are transient; other 4xx (400 bad request,
    403 auth) permanent. The API key never appears in ``repr``, logs or errors.
    """

    kind: ClassVar[NotificationChannel] = NotificationChannel.notify
    can_lookup: ClassVar[bool] = True

    def __init__(
        self,
        *,
        api_key: SecretStr | str,
        template_ids: Mapping[Template | str, str],
        base_url: str = DEFAULT_NOTIFY_BASE_URL,
        client: httpx.AsyncClient | None = None,
        timeout: float = 15.0,
    ) -> None:
        # The key's text: a Prefect Secret block it named was read by whoever built the
        # channel (tasks.dispatch.channel_from_config): channels never read settings.
        secret = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        match = _NOTIFY_KEY.fullmatch(secret.get_secret_value().strip())
        if match is None:
            raise ValueError(
                "notify: the API key is not in the form {key_name}-{service_id}-{secret_key}"
            )
        self.service_id = match.group(1)
        self._secret = SecretStr(match.group(2))
        self.template_ids = {Template(k): str(v) for k, v in template_ids.items()}
        self.base_url = base_url.rstrip("/")
        self._client = client
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"NotifyChannel(base_url={self.base_url!r})"

    def _headers(self) -> dict[str, str]:
        token = jwt.encode(
            {"iss": self.service_id, "iat": int(time.time())},
            self._secret.get_secret_value(),
            algorithm="HS256",
            headers={"typ": "JWT"},
        )
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "cme-tracing-notifications",
        }

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        what = f"notify: {method} {path}"
        try:
            if self._client is not None:
                response = await self._client.request(
                    method,
                    self.base_url + path,
                    headers=self._headers(),
                    timeout=self.timeout,
                    **kw,
                )
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.request(
                        method, self.base_url + path, headers=self._headers(), **kw
                    )
        except httpx.TimeoutException as exc:
            raise TransientSendError(f"{what} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise TransientSendError(f"{what} failed ({type(exc).__name__})") from None
        status = response.status_code
        if status < 300:
            return response
        kind = _notify_error_kind(response)
        detail = f"{what} returned {status}{f' {kind}' if kind else ''}"
        if status in _TRANSIENT_STATUS or status >= 500:
            raise TransientSendError(detail, status=status)
        raise PermanentSendError(detail, status=status)

    async def send(self, msg: OutgoingMessage) -> str:
        template_id = self.template_ids.get(msg.template)
        if not template_id:
            raise PermanentSendError(
                f"notify: no template id configured for template {msg.template.value!r}"
            )
        payload = {
            "email_address": msg.recipient,
            "template_id": template_id,
            "personalisation": _personalisation_for_notify(msg),
            "reference": msg.idempotency_key,
        }
        response = await self._request("POST", "/v2/notifications/email", json=payload)
        try:
            provider_id = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            # Notify took it but the answer is unreadable: a retry looks it up first.
            raise TransientSendError("notify: unreadable response to a send") from None
        return str(provider_id)

    async def lookup(self, msg: OutgoingMessage) -> str | None:
        response = await self._request(
            "GET", "/v2/notifications", params={"reference": msg.idempotency_key}
        )
        try:
            found = response.json()["notifications"]
        except (ValueError, KeyError, TypeError):
            raise TransientSendError("notify: unreadable response to a lookup") from None
        for item in found if isinstance(found, list) else []:
            if isinstance(item, dict) and item.get("reference") in (None, msg.idempotency_key):
                if item.get("id"):
                    return str(item["id"])
        return None


def _notify_error_kind(response: httpx.Response) -> str | None:
    """Notify's error class name (e.g. ``BadRequestError``); its message is not kept, as it
    can quote the request."""
    try:
        errors = response.json().get("errors") or []
        kind = errors[0].get("error")
    except (ValueError, AttributeError, IndexError, TypeError):
        return None
    return kind if isinstance(kind, str) and re.fullmatch(r"[A-Za-z]{1,60}", kind) else None


# --- factory ---------------------------------------------------------------------------------


def channel_from_config(kind: NotificationChannel | str, **config: Any) -> Channel:
    """Build a channel from plain settings (e.g. ``CME_NOTIFICATION_CHANNEL`` and friends).

    ``file``: ``outbox_dir``, optional ``mail_from``.
    ``smtp``: ``host``, ``port``, ``username``, ``password``, ``starttls``, ``mail_from``.
    ``notify``: ``api_key``, ``template_ids``, ``base_url``, optional ``client``.
    Options given as ``None`` take the default. Raises ``ValueError`` for an unknown kind, a
    missing required option or an unknown option (named; values are never shown).
    """
    try:
        which = NotificationChannel(kind)
    except ValueError:
        raise ValueError(
            f"unknown notification channel {str(kind)!r}; expected file, smtp or notify"
        ) from None
    options = {k: v for k, v in config.items() if v is not None}
    accepted: dict[NotificationChannel, tuple[set[str], set[str]]] = {
        NotificationChannel.file: ({"outbox_dir"}, {"mail_from"}),
        NotificationChannel.smtp: (
            {"host"},
            {"port", "username", "password", "starttls", "mail_from", "timeout"},
        ),
        NotificationChannel.notify: (
            {"api_key", "template_ids"},
            {"base_url", "client", "timeout"},
        ),
    }
    required, optional = accepted[which]
    unknown = sorted(set(options) - required - optional)
    if unknown:
        raise ValueError(f"{which.value} channel: unknown option {unknown[0]!r}")
    missing = sorted(required - set(options))
    if missing:
        raise ValueError(f"{which.value} channel: option {missing[0]!r} is required")
    if which is NotificationChannel.file:
        return FileChannel(**options)
    if which is NotificationChannel.smtp:
        return SmtpChannel(**options)
    return NotifyChannel(**options)
