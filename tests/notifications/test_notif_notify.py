"""GOV.UK Notify channel against a respx-mocked API: auth, body, error classes, lookup."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
import respx
from pydantic import SecretStr

from models.enums import Template
from notifications import (
    NotifyChannel,
    OutgoingMessage,
    PermanentSendError,
    TransientSendError,
    render,
)
from tests.la_configs import LA_NAME

BASE = "https://notify.test"
SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"
API_KEY = f"cme_live-{SERVICE_ID}-{SECRET}"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
PERSONALISATION = {"reference": "CME-2026-0042", "initials": "Z.Q.", "school_name": "Test School",
                   "la_name": LA_NAME}


def channel(**kw) -> NotifyChannel:
    return NotifyChannel(
        api_key=SecretStr(API_KEY),
        base_url=BASE,
        template_ids={Template.acknowledgement: TEMPLATE_ID},
        **kw,
    )


def message(key: str = "ack:CME-2026-0042") -> OutgoingMessage:
    out = render(Template.acknowledgement, PERSONALISATION)
    return OutgoingMessage(
        idempotency_key=key,
        template=Template.acknowledgement,
        recipient="office@school.example.org",
        subject=out.subject,
        body=out.body,
        personalisation=PERSONALISATION,
    )


@respx.mock(base_url=BASE, assert_all_called=True)
async def test_send_posts_the_email_with_a_valid_jwt(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("/v2/notifications/email").respond(
        201, json={"id": "740e5834-3a29-46b4-9a6f-16142fde533a", "reference": "ack:CME-2026-0042"}
    )
    before = int(time.time())

    provider_id = await channel().send(message())

    assert provider_id == "740e5834-3a29-46b4-9a6f-16142fde533a"
    request = route.calls.last.request
    scheme, token = request.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["iss"] == SERVICE_ID
    assert before <= claims["iat"] <= int(time.time())
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "0" * 36, algorithms=["HS256"])
    body = json.loads(request.content)
    assert body["email_address"] == "office@school.example.org"
    assert body["template_id"] == TEMPLATE_ID
    assert body["reference"] == "ack:CME-2026-0042"
    assert body["personalisation"]["reference"] == "CME-2026-0042"
    assert body["personalisation"]["initials"] == "Z.Q."
    assert body["personalisation"]["subject"] == message().subject
    assert body["personalisation"]["body"] == message().body
    assert SECRET not in request.content.decode()


@pytest.mark.parametrize("status", [429, 500, 502, 503])
@respx.mock(base_url=BASE)
async def test_429_and_5xx_are_transient(respx_mock: respx.MockRouter, status: int) -> None:
    respx_mock.post("/v2/notifications/email").respond(
        status,
        json={
            "status_code": status,
            "errors": [{"error": "RateLimitError", "message": "Exceeded rate limit"}],
        },
    )
    with pytest.raises(TransientSendError) as info:
        await channel().send(message())
    assert info.value.status == status
    assert str(status) in str(info.value)


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError])
@respx.mock(base_url=BASE)
async def test_timeouts_and_connection_errors_are_transient(
    respx_mock: respx.MockRouter, error: type[Exception]
) -> None:
    respx_mock.post("/v2/notifications/email").mock(side_effect=error("boom"))
    with pytest.raises(TransientSendError, match=error.__name__):
        await channel().send(message())


@pytest.mark.parametrize(("status", "kind"), [(400, "BadRequestError"), (403, "AuthError")])
@respx.mock(base_url=BASE)
async def test_400_and_403_are_permanent_and_keep_no_message_text(
    respx_mock: respx.MockRouter, status: int, kind: str
) -> None:
    # Notify's message can quote the request; only its error class is kept.
    respx_mock.post("/v2/notifications/email").respond(
        status,
        json={
            "status_code": status,
            "errors": [{"error": kind, "message": "Z.Q. office@school.example.org"}],
        },
    )
    with pytest.raises(PermanentSendError) as info:
        await channel().send(message())
    text = str(info.value)
    assert info.value.status == status and kind in text
    assert "Z.Q." not in text and "office@school" not in text and SECRET not in text


@respx.mock(base_url=BASE)
async def test_an_unreadable_success_body_is_transient_so_a_retry_looks_up_first(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.post("/v2/notifications/email").respond(201, text="<html>")
    with pytest.raises(TransientSendError, match="unreadable"):
        await channel().send(message())


@respx.mock(base_url=BASE, assert_all_called=True)
async def test_lookup_by_reference_finds_a_sent_notification(
    respx_mock: respx.MockRouter,
) -> None:
    route = respx_mock.get("/v2/notifications", params={"reference": "ack:CME-2026-0042"}).respond(
        200,
        json={
            "notifications": [
                {"id": "n-1", "reference": "ack:CME-2026-0042", "status": "delivered"}
            ],
            "links": {},
        },
    )
    assert await channel().lookup(message()) == "n-1"
    token = route.calls.last.request.headers["Authorization"].removeprefix("Bearer ")
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["iss"] == SERVICE_ID


@respx.mock(base_url=BASE)
async def test_lookup_finds_nothing(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v2/notifications").respond(200, json={"notifications": [], "links": {}})
    assert await channel().lookup(message()) is None


@respx.mock(base_url=BASE)
async def test_lookup_failure_is_transient_not_none(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v2/notifications").respond(503)
    with pytest.raises(TransientSendError):
        await channel().lookup(message())


@respx.mock(base_url=BASE)
async def test_a_given_client_is_used(respx_mock: respx.MockRouter) -> None:
    respx_mock.post("/v2/notifications/email").respond(201, json={"id": "n-2"})
    async with httpx.AsyncClient() as client:
        assert await channel(client=client).send(message()) == "n-2"


async def test_a_template_without_an_id_is_permanent() -> None:
    msg = message()
    other = OutgoingMessage(
        idempotency_key="k",
        template=Template.resolution,
        recipient=msg.recipient,
        subject="s",
        body="b",
    )
    with pytest.raises(PermanentSendError, match="no template id .* 'resolution'"):
        await channel().send(other)


def test_the_secret_never_shows() -> None:
    ch = channel()
    assert SECRET not in repr(ch) and SECRET not in str(vars(ch))
    assert ch.service_id == SERVICE_ID


@pytest.mark.parametrize("bad", ["", "no-dashes", f"name-{SERVICE_ID}", "x-" + SECRET[:-1]])
def test_a_malformed_api_key_is_rejected_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="not in the form") as info:
        NotifyChannel(api_key=bad, template_ids={})
    if bad:
        assert bad not in str(info.value)
