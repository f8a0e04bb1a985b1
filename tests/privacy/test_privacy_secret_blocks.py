"""Credentials from Prefect Secret blocks (``CME_…=prefect-secret:<block>``), against the
session's real Prefect test server.

Every secret setting may name a block instead of holding the secret: an agency's API key,
the GOV.UK Notify key, the SMTP password and the Mendix feed's password. These tests store
canary values in blocks on the server, point the settings at them and check that each
reaches the other side (the agency's bearer token, Notify's JWT signature, the SMTP login,
the feed's basic auth) while no output shows it; and that a block that cannot be read fails
clearly — naming the setting and the block — without sending anything unauthenticated.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.la_configs import LA_NAME

AGENCY = "https://agency.example"
NOTIFY = "https://notify.example"
MENDIX = "https://mendix.example/odata"
BUILTINS = ("other_la", "housing", "lpd", "dwp", "border_force")


@pytest.fixture
def blocks(prefect_harness: None) -> Iterator[dict[str, str]]:
    """Canary secrets saved as Prefect Secret blocks: block name → value."""
    from prefect.blocks.system import Secret

    from connectors.secrets import _load_once

    tag = secrets.token_hex(4)
    notify_secret = str(uuid.uuid4())
    values = {
        f"housing-key-{tag}": f"cnryblockkey-{tag}",
        f"notify-key-{tag}": f"cmeblock-{uuid.uuid4()}-{notify_secret}",
        f"mendix-pw-{tag}": f"cnryblockmendix-{tag}",
    }
    for name, value in values.items():
        Secret(value=value).save(name, overwrite=True)
    _load_once.cache_clear()
    yield values
    _load_once.cache_clear()


def _named(blocks: dict[str, str], prefix: str) -> tuple[str, str]:
    return next((k, v) for k, v in blocks.items() if k.startswith(prefix))


@pytest.fixture
def block_env(workdir: Path, blocks: dict[str, str],
              monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from sandbox import connector_env

    env = connector_env(AGENCY)
    for name in BUILTINS:
        env[f"CME_{name.upper()}_MAX_ATTEMPTS"] = "1"
    env.update({
        "CME_CONNECTORS": ",".join(BUILTINS),
        "CME_DATABASE_URL": f"sqlite:///{workdir / 'cme.db'}",
        "CME_HOUSING_API_KEY": "prefect-secret:" + _named(blocks, "housing-key")[0],
        "CME_NOTIFICATION_CHANNEL": "notify",
        "CME_NOTIFY_API_KEY": "prefect-secret:" + _named(blocks, "notify-key")[0],
        "CME_NOTIFY_BASE_URL": NOTIFY,
        "CME_NOTIFY_TEMPLATE_IDS": json.dumps({"acknowledgement": str(uuid.uuid4())}),
        "CME_MENDIX_BASE_URL": MENDIX,
        "CME_MENDIX_USERNAME": "mendix",
        "CME_MENDIX_PASSWORD": "prefect-secret:" + _named(blocks, "mendix-pw")[0],
    })
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _mock() -> respx.MockRouter:
    """respx for the agencies, Notify and Mendix; calls to the Prefect API go through."""
    from prefect.settings import PREFECT_API_URL

    router = respx.mock(using="httpx", assert_all_mocked=True, assert_all_called=False)
    router.route(host=httpx.URL(str(PREFECT_API_URL.value())).host).pass_through()
    return router


def _leaks(text: str, blocks: dict[str, str]) -> list[str]:
    return [name for name, value in blocks.items() if value in text]


def test_an_agency_key_from_a_block_is_the_bearer_and_never_shown(
        block_env: dict[str, str], blocks: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    from cme.cli import app

    _, key = _named(blocks, "housing-key")
    caplog.set_level(logging.DEBUG)
    with _mock() as router:
        router.route(host="agency.example").mock(
            side_effect=lambda r: httpx.Response(
                401, json={"detail": f"bad token {r.headers.get('authorization')}"}))
        out = CliRunner().invoke(app, ["connectors", "check"], env={"COLUMNS": "250"})
        sent = {c.request.url.path.split("/")[1]: c.request.headers.get("authorization")
                for c in router.calls}
    assert sent.get("housing") == f"Bearer {key}", sent  # the block's value was the key
    assert sent.get("lpd") is None, sent  # a connector with no key sends none
    assert not _leaks(out.output + caplog.text, blocks), out.output


def test_settings_holding_block_names_are_read_without_the_prefect_api(
        block_env: dict[str, str], blocks: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading settings never resolves secrets: `cme cases` works with no Prefect server."""
    from cme.cli import app
    from flows.settings import get_settings
    from models.migrate import upgrade

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{closed}/api")
    settings = get_settings()
    upgrade(settings.database_url)
    assert settings.notify_api_key is not None
    assert settings.notify_api_key.get_secret_value().startswith("prefect-secret:")
    out = CliRunner().invoke(app, ["cases"], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert not _leaks(repr(settings) + str(settings) + out.output, blocks)


async def test_the_notify_key_from_a_block_signs_the_jwt(
        block_env: dict[str, str], blocks: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    import jwt

    from flows._config import dispatch_config
    from flows.settings import get_settings
    from models import NotificationChannel, Template, session_scope
    from models.migrate import upgrade
    from notifications import queue_notification
    from tasks.dispatch import dispatch_outbox

    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as s:
        queue_notification(
            s, referral_id=None, template=Template.acknowledgement,
            recipient="office@school.example.org",
            personalisation={"reference": "CME-2026-000001", "initials": "Z.Q.",
                             "school_name": "Test School", "la_name": LA_NAME},
            channel=NotificationChannel.notify, idempotency_key="ack:block")
    tokens: list[str] = []

    def accept(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers.get("authorization", "").split()[-1])
        return httpx.Response(201, json={"id": str(uuid.uuid4())})

    caplog.set_level(logging.DEBUG)
    with _mock() as router:
        router.route(host="notify.example").mock(side_effect=accept)
        counts = await dispatch_outbox(dispatch_config(settings))
    assert counts.get("sent") == 1, counts
    _, key = _named(blocks, "notify-key")
    signing_secret = key[-36:]  # {key_name}-{service_id}-{secret_key}: the last uuid
    claims = jwt.decode(tokens[0], signing_secret, algorithms=["HS256"],
                        options={"verify_iat": False})
    assert claims["iss"] == key[-73:-37]  # the service id, from the block's key
    assert not _leaks(caplog.text, blocks)
    assert signing_secret not in caplog.text


async def test_the_mendix_password_from_a_block_is_sent_as_basic_auth(
        block_env: dict[str, str], blocks: dict[str, str]) -> None:
    from flows.settings import get_settings
    from models.migrate import upgrade
    from tasks.odata import fetch_mendix_changes

    settings = get_settings()
    upgrade(settings.database_url)
    seen: list[str] = []

    def page(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"value": []})

    with _mock() as router:
        router.route(host="mendix.example").mock(side_effect=page)
        await fetch_mendix_changes(settings)
    _, password = _named(blocks, "mendix-pw")
    assert seen and seen[0] == "Basic " + base64.b64encode(
        f"mendix:{password}".encode()).decode()


@pytest.mark.parametrize("reference", ["prefect-secret:no-such-block-here",
                                       "prefect-secret:Not A Block Name!"])
async def test_an_unreadable_block_fails_every_check_clearly_and_sends_nothing(
        block_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, reference: str) -> None:
    from connectors import TraceSubject, check_health, load_enabled, run_connector

    monkeypatch.setenv("CME_HOUSING_API_KEY", reference)
    [housing] = load_enabled(["housing"])
    subjects = [TraceSubject(reference=f"CME-2026-00000{i}", surname="Zqxcanary",
                             forename="Test", postcode="SO23 8UJ") for i in range(3)]
    with _mock() as router:
        route = router.route(host="agency.example").mock(return_value=httpx.Response(200))
        outcomes = await run_connector(housing, subjects)
    assert not route.called  # nothing went out without its credentials
    assert [o.subject_reference for o in outcomes] == [s.reference for s in subjects]
    for o in outcomes:
        r = o.result
        assert (r.outcome.value, r.error_kind, r.error_code) == (
            "error", "permanent", "credentials_unavailable"), r
        assert o.disclosed_fields == () and o.http_calls == 0  # nothing was disclosed
        assert "Zqxcanary" not in (r.message or "")
    # `cme connectors check` (the health probe) says which setting and which block.
    with _mock() as router:
        route = router.route(host="agency.example").mock(return_value=httpx.Response(200))
        health = await check_health(housing)
    assert not route.called and not health.ok
    block = reference.removeprefix("prefect-secret:")
    assert "CME_HOUSING_API_KEY" in health.detail and repr(block) in health.detail, health
    # A connector whose probe sends nothing (DWP files formal requests) is not "ok" either.
    monkeypatch.setenv("CME_DWP_API_KEY", reference)
    [dwp] = load_enabled(["dwp"])
    with _mock() as router:
        route = router.route(host="agency.example").mock(return_value=httpx.Response(200))
        health = await check_health(dwp)
    assert not route.called and not health.ok and "CME_DWP_API_KEY" in health.detail, health


async def test_an_unreadable_notify_key_keeps_every_notification_pending_and_says_why(
        block_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from sqlmodel import select

    from connectors.secrets import SecretBlockError
    from flows._config import dispatch_config
    from flows.settings import get_settings
    from models import (
        Notification,
        NotificationChannel,
        NotificationStatus,
        Template,
        session_scope,
    )
    from models.migrate import upgrade
    from notifications import queue_notification
    from tasks.dispatch import channel_from_config, dispatch_outbox

    with pytest.raises(SecretBlockError) as info:
        channel_from_config("notify", api_key=SecretStr("prefect-secret:missing-notify-key"),
                            template_ids={"acknowledgement": "t-1"})
    message = str(info.value)
    assert "CME_NOTIFY_API_KEY" in message and "'missing-notify-key'" in message, message

    monkeypatch.setenv("CME_NOTIFY_API_KEY", "prefect-secret:missing-notify-key")
    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as s:
        for n in range(3):
            queue_notification(
                s, referral_id=None, template=Template.acknowledgement,
                recipient="office@school.example.org",
                personalisation={"reference": f"CME-2026-00000{n}", "initials": "Z.Q.",
                                 "school_name": "Test School", "la_name": LA_NAME},
                channel=NotificationChannel.notify, idempotency_key=f"ack:missing:{n}")
    caplog.set_level(logging.WARNING)
    with _mock() as router:
        route = router.route(host="notify.example").mock(return_value=httpx.Response(201))
        counts = await dispatch_outbox(dispatch_config(settings))
    assert not route.called and counts.get("channel_unavailable") == 1, counts
    with session_scope(settings.database_url) as s:
        statuses = {n.status for n in s.exec(select(Notification)).all()}
    assert statuses == {NotificationStatus.pending}, statuses  # all kept for next time
    assert "CME_NOTIFY_API_KEY" in caplog.text and "missing-notify-key" in caplog.text


async def test_an_smtp_password_from_a_block_logs_in(
        prefect_harness: None, workdir: Path) -> None:
    """A real SMTP server (aiosmtpd) that takes only cme and the password in the block."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
    from prefect.blocks.system import Secret

    from connectors.secrets import _load_once
    from models import Template
    from notifications.channels import OutgoingMessage
    from tasks.dispatch import channel_from_config

    name = f"smtp-pw-{secrets.token_hex(4)}"
    # All digits: Secret.get() would JSON-decode it into an int; the text must arrive as is.
    password = "9" + "".join(str(secrets.randbelow(10)) for _ in range(11))
    await Secret(value=password).save(name, overwrite=True)  # async test: save is awaited
    _load_once.cache_clear()
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: object, session: object,  # noqa: N802
                              envelope: object) -> str:
            received.append(envelope.content)  # type: ignore[attr-defined]
            return "250 OK"

    def authenticate(server: object, session: object, envelope: object, mechanism: str,
                     auth_data: object) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login, auth_data.password) == (b"cme", password.encode())
        return AuthResult(success=ok, handled=False)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port,
                            authenticator=authenticate, auth_required=True,
                            auth_require_tls=False)
    controller.start()
    try:
        channel = channel_from_config("smtp", host="127.0.0.1", port=port, username="cme",
                                      password=SecretStr(f"prefect-secret:{name}"))
        assert password not in repr(channel)
        await channel.send(OutgoingMessage(
            idempotency_key="k-1", template=Template.acknowledgement,
            recipient="office@school.example.org", subject="CME referral CME-2026-000001",
            body="Acknowledged.", personalisation={}, sender_name="Hampshire CME team"))
    finally:
        controller.stop()
    assert len(received) == 1
