"""Credentials read from settings never show, even when the other side quotes them back.

Canary values for every credential the settings hold (each agency's ``CME_<NAME>_API_KEY``,
the GOV.UK Notify key, the SMTP and Mendix passwords, a database password), then the paths
that print or record things: ``cme connectors list``/``check`` (also with ``--debug``)
against agencies that echo the ``Authorization`` header in their error bodies and
exceptions, dispatch through Notify when Notify does the same (logs, the outbox rows,
``cme outbox``), the Mendix feed refusing the password, the CLI failing to reach the
database, and the deployments file. (``tests/e2e/test_e2e_secrets.py`` does the same
through a real Prefect server and worker.)
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from typer.testing import CliRunner

from tests.la_configs import LA_NAME

REPO = Path(__file__).resolve().parents[2]
AGENCY = "https://agency.example"
NOTIFY = "https://notify.example"
MENDIX = "https://mendix.example/odata"
BUILTINS = ("other_la", "housing", "lpd", "dwp", "border_force")
_TAG = secrets.token_hex(4)
NOTIFY_SECRET = str(uuid.uuid4())
CANARIES = {
    **{f"{n}_api_key": f"cnrykey-{n.replace('_', '')}-{_TAG}" for n in BUILTINS},
    "notify_api_key": f"cmecanary-{uuid.uuid4()}-{NOTIFY_SECRET}",
    "notify_secret": NOTIFY_SECRET,
    "smtp_password": f"cnrysmtp-{_TAG}",
    "mendix_password": f"cnrymendix-{_TAG}",
    "db_password": f"cnrydb-{_TAG}",
}


def _leaks(text: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Which canaries (or credential-bearing header values) ``text`` contains."""
    needles = {**CANARIES,
               "mendix basic header": base64.b64encode(
                   f"mendix:{CANARIES['mendix_password']}".encode()).decode()}
    needles.update({f"seen {i}": v for i, v in enumerate(extra) if v})
    low = text.lower()
    return [name for name, value in needles.items() if value.lower() in low]


@pytest.fixture
def secret_env(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings with a canary in every credential; agencies at AGENCY (https)."""
    from sandbox import connector_env

    env = connector_env(AGENCY)
    for name in BUILTINS:
        env[f"CME_{name.upper()}_API_KEY"] = CANARIES[f"{name}_api_key"]
        env[f"CME_{name.upper()}_MAX_ATTEMPTS"] = "1"  # one try each: no backoff sleeps
    templates = ("acknowledgement", "resolution", "inter_la")
    env.update({
        "CME_CONNECTORS": ",".join(BUILTINS),
        "CME_DATABASE_URL": f"sqlite:///{workdir / 'cme.db'}",
        "CME_NOTIFICATION_CHANNEL": "notify",
        "CME_NOTIFY_API_KEY": CANARIES["notify_api_key"],
        "CME_NOTIFY_BASE_URL": NOTIFY,
        "CME_NOTIFY_TEMPLATE_IDS": json.dumps({t: str(uuid.uuid4()) for t in templates}),
        "CME_SMTP_USERNAME": "cme-mailer",
        "CME_SMTP_PASSWORD": CANARIES["smtp_password"],
        "CME_MENDIX_BASE_URL": MENDIX,
        "CME_MENDIX_USERNAME": "mendix",
        "CME_MENDIX_PASSWORD": CANARIES["mendix_password"],
    })
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return workdir


def _echoing_agency(request: httpx.Request) -> httpx.Response:
    """Each agency fails differently, quoting the credential it was sent."""
    token = request.headers.get("authorization", "")
    path = request.url.path
    if path.startswith("/dwp"):
        return httpx.Response(200, json={"status": "ok"})
    if path.startswith("/lpd"):
        return httpx.Response(500, json={"error": f"internal error for {token}"})
    if path.startswith("/border-force"):
        raise httpx.ConnectError(f"connection reset while sending {token}", request=request)
    return httpx.Response(401, json={"detail": f"invalid credentials: {token}"},
                          headers={"WWW-Authenticate": f'Bearer error="{token}"'})


def test_connectors_list_and_check_never_show_an_agency_key(
        secret_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    from cme.cli import app

    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    with respx.mock(using="httpx", assert_all_mocked=True) as router:
        router.route(host="agency.example").mock(side_effect=_echoing_agency)
        results = {" ".join(a): runner.invoke(app, a, env={"COLUMNS": "250"}) for a in (
            ["connectors", "list"], ["connectors", "list", "--json"],
            ["connectors", "check"], ["--debug", "connectors", "check"])}
        sent = [c.request.headers.get("authorization", "") for c in router.calls]
    # Positive control: every agency was probed, with its own canary key as the bearer.
    for name in BUILTINS:
        assert f"Bearer {CANARIES[f'{name}_api_key']}" in sent, (name, sent)
    check = results["connectors check"]
    assert check.exit_code == 1 and "dwp" in check.output, check.output
    assert "http_401" in check.output and "FAIL" in check.output, check.output
    for args, result in results.items():
        assert not _leaks(result.output + repr(result.exception)), (args, result.output)
    assert not _leaks(caplog.text), caplog.text


async def test_notify_quoting_the_token_back_leaves_no_secret_in_logs_rows_or_the_cli(
        secret_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    import jwt
    from sqlmodel import select

    from cme.cli import app
    from flows._config import dispatch_config
    from flows.settings import get_settings
    from models import Notification, NotificationChannel, Template, session_scope
    from models.migrate import upgrade
    from notifications import queue_notification
    from tasks.dispatch import dispatch_outbox

    settings = get_settings()
    upgrade(settings.database_url)
    with session_scope(settings.database_url) as s:
        for n in range(6):
            queue_notification(
                s, referral_id=None, template=Template.acknowledgement,
                recipient="office@school.example.org",
                personalisation={"reference": f"CME-2026-00{n:04d}", "initials": "Z.Q.",
                                 "school_name": "Test School", "la_name": LA_NAME},
                channel=NotificationChannel.notify, idempotency_key=f"ack:{n}")
    tokens: list[str] = []

    def echo(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "")
        tokens.append(token)
        if request.method == "GET":
            return httpx.Response(200, json={"notifications": []})
        kind = len(tokens) % 3
        if kind == 0:
            return httpx.Response(201, json={"id": str(uuid.uuid4())})
        status, error = (403, "AuthError") if kind == 1 else (400, "BadRequestError")
        return httpx.Response(status, json={"status_code": status, "errors": [
            {"error": error, "message": f"Invalid token: {token} ({CANARIES['notify_secret']})"}]})

    caplog.set_level(logging.DEBUG)
    cfg = dispatch_config(settings)
    with respx.mock(using="httpx", assert_all_mocked=True) as router:
        router.route(host="notify.example").mock(side_effect=echo)
        counts = await dispatch_outbox(cfg)
    # Positive control: Notify was called with JWTs signed by the canary key.
    bearer = [t.split()[-1] for t in tokens if t]
    assert bearer and counts.get("sent", 0) >= 1 and counts.get("failed", 0) >= 1, counts
    assert jwt.decode(bearer[0], NOTIFY_SECRET, algorithms=["HS256"],
                      options={"verify_iat": False})["iss"]
    with session_scope(settings.database_url) as s:
        rows = [r.model_dump_json() for r in s.exec(select(Notification)).all()]
    outbox = CliRunner().invoke(app, ["outbox", "--json"], env={"COLUMNS": "250"})
    assert outbox.exit_code == 0, outbox.output
    for where, text in (("logs", caplog.text), ("rows", "\n".join(rows)),
                        ("cme outbox", outbox.output), ("config", repr(cfg) + str(cfg))):
        assert not _leaks(text, tuple(bearer)), (where, _leaks(text, tuple(bearer)))


async def test_the_mendix_feed_refusing_the_password_does_not_repeat_it(
        secret_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flows.settings import get_settings
    from models.migrate import upgrade
    from tasks.odata import MendixFeedError, fetch_mendix_changes

    settings = get_settings()
    upgrade(settings.database_url)
    seen: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(401, json={"error": f"bad credentials {seen[-1]}"})

    caplog.set_level(logging.DEBUG)
    with respx.mock(using="httpx", assert_all_mocked=True) as router:
        router.route(host="mendix.example").mock(side_effect=refuse)
        with pytest.raises(MendixFeedError) as info:
            await fetch_mendix_changes(settings)
    assert seen and seen[0].startswith("Basic ")  # the password was sent ...
    text = f"{info.value}\n{info.value!r}\n{caplog.text}"
    assert not _leaks(text, tuple(seen)), (_leaks(text, tuple(seen)), text)  # ... not shown


@pytest.mark.parametrize("args", [["db", "upgrade"], ["--debug", "db", "upgrade"], ["cases"]])
def test_a_database_password_stays_out_of_cli_errors(workdir: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CME_")}
    # A closed port: the connection is refused at once.
    env["CME_DATABASE_URL"] = (f"postgresql+psycopg://cme:{CANARIES['db_password']}"
                               "@127.0.0.1:1/cme")
    out = subprocess.run(  # noqa: S603 - our own console script
        [str(Path(sys.executable).parent / "cme"), *args], capture_output=True, text=True,
        env=env, cwd=workdir, timeout=120, check=False)
    assert out.returncode != 0 and (out.stdout + out.stderr).strip()
    assert not _leaks(out.stdout + out.stderr), out.stdout + out.stderr


def test_prefect_yaml_takes_no_settings_or_credentials() -> None:
    """Flows get settings from the worker's environment (or Secret blocks), never from the
    deployments file, which is committed and shown by the server to every UI user."""
    import yaml

    text = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in strings(k) + strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    values = strings(doc)
    assert not [v for v in values if "CME_" in v and v != "{{ $CME_HOME }}"], values
    for deployment in doc["deployments"]:
        env = (deployment.get("job_variables") or {}).get("env") or {}
        assert not env, (deployment["name"], env)
    keys = {k.lower() for d in doc["deployments"] for k in _keys(d)}
    assert not keys & {"password", "api_key", "token", "secret", "auth_string"}, keys


def _keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [str(k) for k in node] + [k for v in node.values() for k in _keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in _keys(v)]
    return []
