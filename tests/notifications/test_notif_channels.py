"""The file and SMTP channels, and the channel factory. SMTP runs against a real local
aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from models.enums import Template
from notifications import (
    FileChannel,
    NotifyChannel,
    OutcomeUnknownError,
    OutgoingMessage,
    PermanentSendError,
    SmtpChannel,
    TransientSendError,
    channel_from_config,
    message_id_for,
    render,
)
from tests.la_configs import LA_NAME

PERSONALISATION = {
    "reference": "CME-2026-0042",
    "initials": "Z.Q.",
    "school_name": "St Mary's & St John's C of E Primary",
    "la_name": LA_NAME,
}


def message(
    key: str = "ack:CME-2026-0042", recipient: str = "office@school.example.org"
) -> OutgoingMessage:
    out = render(Template.acknowledgement, PERSONALISATION)
    return OutgoingMessage(
        idempotency_key=key,
        template=Template.acknowledgement,
        recipient=recipient,
        subject=out.subject,
        body=out.body,
        personalisation=PERSONALISATION,
        sender_name="Hampshire CME team",
    )


def parse(data: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


# --- file ------------------------------------------------------------------------------------


async def test_file_channel_writes_one_parseable_eml_per_key(tmp_path: Path) -> None:
    channel = FileChannel(tmp_path / "outbox", mail_from="cme@hants.example.gov.uk")
    msg = message()
    assert await channel.lookup(msg) is None

    provider_id = await channel.send(msg)

    files = list((tmp_path / "outbox").iterdir())
    assert [f.name for f in files] == [provider_id]
    parsed = parse(files[0].read_bytes())
    assert parsed["To"] == "office@school.example.org"
    assert parsed["Subject"] == msg.subject
    assert parsed["From"] == "Hampshire CME team <cme@hants.example.gov.uk>"
    assert parsed["Message-ID"] == message_id_for(msg.idempotency_key, "cme@hants.example.gov.uk")
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == msg.body
    assert "St Mary's & St John's" in body.get_content()  # plain text: no HTML escaping
    assert await channel.lookup(msg) == provider_id


async def test_file_channel_resend_of_a_key_overwrites_nothing(tmp_path: Path) -> None:
    channel = FileChannel(tmp_path)
    first = await channel.send(message())
    stat = (tmp_path / first).stat()
    again = await channel.send(message())
    assert again == first
    assert (tmp_path / first).stat().st_mtime_ns == stat.st_mtime_ns
    assert len(list(tmp_path.iterdir())) == 1


async def test_file_channel_names_are_safe_and_distinct_per_key(tmp_path: Path) -> None:
    channel = FileChannel(tmp_path / "out")
    a = await channel.send(message("../../etc/passwd"))
    b = await channel.send(message("ack:CME/1"))
    c = await channel.send(message("ack:CME_1"))
    assert len({a, b, c}) == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([a, b, c])
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "out").iterdir())


async def test_a_first_send_never_scans_the_outbox_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A glob of the folder per message made a night's file dispatch quadratic (issue 17's
    profile: 3 % of the flow's samples at 665 messages). A copy an interrupted attempt left
    under the key's temporary name is replaced, and the file is still 0600."""
    out = tmp_path / "out"
    out.mkdir()
    channel = FileChannel(out)
    leftover = channel._part_path("ack:CME-2026-0042")
    leftover.write_bytes(b"half a message")

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("the outbox folder was scanned")

    monkeypatch.setattr(Path, "glob", no_scan)
    name = await channel.send(message())
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert (out / name).stat().st_mode & 0o777 == 0o600


async def test_recovery_removes_half_written_copies_under_any_older_name(tmp_path: Path) -> None:
    """An earlier release wrote under random temporary names; ``lookup`` (the dispatcher's
    crash-recovery path) still clears them, so no ``.part`` outlives a crash."""
    channel = FileChannel(tmp_path)
    old = tmp_path / f"{channel._part_prefix('ack:CME-2026-0042')}k3j9x2.part"
    old.write_bytes(b"half")
    assert await channel.lookup(message()) is None
    assert not old.exists()
    name = await channel.send(message())
    assert [p.name for p in tmp_path.iterdir()] == [name]


async def test_message_id_is_deterministic_per_key() -> None:
    assert message_id_for("k1") == message_id_for("k1") != message_id_for("k2")


async def test_file_channel_unwritable_folder_is_transient(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(TransientSendError, match="could not write") as info:
        await FileChannel(blocker).send(message())
    assert "Z.Q." not in str(info.value)


async def test_a_bad_recipient_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentSendError):
        await FileChannel(tmp_path).send(message(recipient="a@b.org, c@d.org"))


# --- SMTP ------------------------------------------------------------------------------------


def smtp_channel(server, **kw) -> SmtpChannel:
    return SmtpChannel(
        host=server.host, port=server.port, mail_from="cme@hants.example.gov.uk", **kw
    )


async def test_smtp_delivers_to_a_real_server_with_a_deterministic_message_id(
    smtp_server,
) -> None:
    msg = message()
    provider_id = await smtp_channel(smtp_server).send(msg)

    [got] = smtp_server.handler.messages
    assert got.mail_from == "cme@hants.example.gov.uk"
    assert got.rcpt_tos == ["office@school.example.org"]
    parsed = parse(got.original_content)
    expected_id = message_id_for(msg.idempotency_key, "cme@hants.example.gov.uk")
    assert parsed["Message-ID"] == provider_id == expected_id
    assert parsed["Subject"] == msg.subject
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == msg.body


async def test_smtp_recipient_refused_is_permanent(smtp_server) -> None:
    smtp_server.handler.rcpt_reply = "550 5.1.1 Mailbox unavailable"
    with pytest.raises(PermanentSendError) as info:
        await smtp_channel(smtp_server).send(message())
    assert info.value.status == 550
    assert "office@school" not in str(info.value)
    assert smtp_server.handler.messages == []


async def test_smtp_4xx_reply_to_the_message_is_transient(smtp_server) -> None:
    smtp_server.handler.data_reply = "451 4.3.0 Try again later"
    with pytest.raises(TransientSendError) as info:
        await smtp_channel(smtp_server).send(message())
    assert info.value.status == 451


async def test_smtp_5xx_reply_to_the_message_is_permanent(smtp_server) -> None:
    smtp_server.handler.data_reply = "554 5.6.0 Message rejected"
    with pytest.raises(PermanentSendError):
        await smtp_channel(smtp_server).send(message())


async def test_smtp_server_down_is_transient(unused_port: int) -> None:
    channel = SmtpChannel(host="127.0.0.1", port=unused_port, timeout=2)
    with pytest.raises(TransientSendError, match="could not connect"):
        await channel.send(message())


async def test_smtp_connection_lost_during_data_is_outcome_unknown(smtp_server) -> None:
    # The server has the message but does not answer in time: it may deliver it.
    smtp_server.handler.data_delay = 1.0
    with pytest.raises(OutcomeUnknownError, match="may have been delivered"):
        await smtp_channel(smtp_server, timeout=0.3).send(message())


async def test_smtp_cannot_look_up(smtp_server) -> None:
    channel = smtp_channel(smtp_server)
    assert channel.can_lookup is False
    with pytest.raises(OutcomeUnknownError):
        await channel.lookup(message())


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_smtp_login_uses_the_password_and_never_shows_it(smtp_auth_server) -> None:
    good = SmtpChannel(
        host=smtp_auth_server.host,
        port=smtp_auth_server.port,
        username="cme",
        password=SecretStr("s3cret-pw"),
    )
    assert "s3cret-pw" not in repr(good)
    await good.send(message())
    assert len(smtp_auth_server.handler.messages) == 1

    bad = SmtpChannel(
        host=smtp_auth_server.host, port=smtp_auth_server.port, username="cme", password="wrong-pw"
    )
    with pytest.raises(PermanentSendError, match="login refused") as info:
        await bad.send(message())
    assert "wrong-pw" not in str(info.value)


# --- factory ---------------------------------------------------------------------------------

API_KEY = "cme_live-26785a09-ab16-4eb0-8407-a37497a57506-3d844edf-8d35-48ac-975b-e847b4f122b0"


def test_channel_from_config_builds_each_kind(tmp_path: Path) -> None:
    assert isinstance(channel_from_config("file", outbox_dir=tmp_path), FileChannel)
    smtp = channel_from_config(
        "smtp",
        host="localhost",
        port=2525,
        username=None,
        password=None,
        starttls=False,
        mail_from="a@b.org",
    )
    assert isinstance(smtp, SmtpChannel) and smtp.port == 2525
    notify = channel_from_config(
        "notify", api_key=SecretStr(API_KEY), base_url=None, template_ids={"acknowledgement": "t-1"}
    )
    assert isinstance(notify, NotifyChannel)


@pytest.mark.parametrize(
    ("kind", "options", "match"),
    [
        ("fax", {}, "unknown notification channel 'fax'"),
        ("file", {}, "option 'outbox_dir' is required"),
        ("file", {"outbox_dir": "x", "colour": "red"}, "unknown option 'colour'"),
        ("notify", {"api_key": None, "template_ids": {}}, "option 'api_key' is required"),
    ],
)
def test_channel_from_config_errors_are_clear(kind: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        channel_from_config(kind, **options)


def test_file_channel_repr_and_env_independence(tmp_path: Path) -> None:
    assert "FileChannel" in repr(FileChannel(tmp_path))
    assert os.fspath(tmp_path) in repr(FileChannel(tmp_path))
