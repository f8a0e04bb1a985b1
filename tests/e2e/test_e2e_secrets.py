"""Credentials stay secret on the UI path, and the API keeps its data behind basic auth.

A real stack whose flows get canary credentials from their settings (the housing key, the
Notify key and the Mendix password by way of Prefect Secret blocks on the stack's server,
the rest from the worker's environment): an API key for every agency connector
(``CME_<NAME>_API_KEY``, sent to the sandbox agencies as a bearer token),
a GOV.UK Notify key with the ``notify`` channel pointed at a fake Notify that echoes the
``Authorization`` header back in its error bodies, an SMTP password, the Mendix feed's
password, and the Prefect API's auth string. After intake, a night, a failing run and a case
report, every output is searched for them: Prefect logs, runs, states, deployments, work
pool, artifacts, events, the processes' console logs, the server's admin settings, both
databases' files, ``stack.json``, ``prefect.yaml``, and the output of ``cme connectors
list``/``check`` and ``cme outbox``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from canarykit import Harvest, Scanner, canary_world, harvest
from rich.console import Console
from uikit import BUILTINS, new_auth_string, run

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = ("acknowledgement", "acknowledgement_reminder", "missing_school_actions",
             "not_cme_signpost", "resolution", "half_termly_update", "inter_la",
             "safeguarding_task")


# ---- a fake GOV.UK Notify that echoes what it was sent -------------------------------------

class _FakeNotify(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NotifyHandler)
        self.tokens: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _NotifyHandler(BaseHTTPRequestHandler):
    server: _FakeNotify

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = self.headers.get("Authorization", "")
        with self.server.lock:
            self.server.tokens.append(token)
            n = len(self.server.tokens)
        if n % 3 == 0:
            self._answer(201, {"id": str(uuid.uuid4())})
        elif n % 3 == 1:  # a hostile or careless provider quoting the credentials back
            self._answer(403, {"status_code": 403, "errors": [
                {"error": "AuthError", "message": f"Invalid token: {token}"}]})
        else:
            self._answer(500, {"status_code": 500, "errors": [
                {"error": "Exception", "message": f"Internal error, request had {token}"}]})

    def do_GET(self) -> None:  # noqa: N802
        self.server.tokens.append(self.headers.get("Authorization", ""))
        self._answer(200, {"notifications": []})

    def log_message(self, *args: Any) -> None:
        pass


# ---- the trial ------------------------------------------------------------------------------

@dataclass
class SecretTrial:
    stack: Any
    secrets: dict[str, str]
    notify: _FakeNotify
    runs: dict[str, Any]
    harvest: Harvest
    held_back: list[str]
    cli: dict[str, str] = field(default_factory=dict)
    prefect_yaml_before: str = ""

    def scanner(self) -> Scanner:
        needles = dict(self.secrets)
        # What a leak of a credential could look like besides its value: the Basic auth
        # header of a user:password pair, and the bearer tokens Notify was sent.
        for name in ("mendix", "prefect_auth"):
            pair = self.secrets[f"{name}_pair"]
            needles[f"{name} basic header"] = base64.b64encode(pair.encode()).decode()
        for i, token in enumerate({t.split()[-1] for t in self.notify.tokens if t}):
            needles[f"Notify JWT {i}"] = token
        needles.pop("mendix_pair")
        needles.pop("prefect_auth_pair")
        return Scanner([], secrets=needles, mark=None)


def _canary_secrets(auth: str) -> dict[str, str]:
    tag = secrets.token_hex(4)
    out = {f"{name}_api_key": f"cnrykey-{name.replace('_', '')}-{tag}" for name in BUILTINS}
    out["notify_secret"] = str(uuid.uuid4())
    out["notify_api_key"] = f"cmecanary-{uuid.uuid4()}-{out['notify_secret']}"
    out["smtp_password"] = f"cnrysmtp-{tag}"
    out["mendix_password"] = f"cnrymendix-{tag}"
    out["mendix_pair"] = f"mendix:{out['mendix_password']}"
    out["prefect_auth_password"] = auth.split(":", 1)[1]
    out["prefect_auth_pair"] = auth
    return out


# These come from Prefect Secret blocks on the stack's server (`prefect-secret:<block>`);
# the rest from the worker's environment. Both ways are searched for in every output.
BLOCKS = {"housing_api_key": "cme-housing-api-key", "notify_api_key": "cme-notify-api-key",
          "mendix_password": "cme-mendix-password"}


def _settings_env(s: dict[str, str], notify_url: str) -> dict[str, str]:
    env = {f"CME_{name.upper()}_API_KEY": s[f"{name}_api_key"] for name in BUILTINS}
    env.update({
        "CME_HOUSING_API_KEY": f"prefect-secret:{BLOCKS['housing_api_key']}",
        "CME_MENDIX_PASSWORD": f"prefect-secret:{BLOCKS['mendix_password']}",
        "CME_NOTIFICATION_CHANNEL": "notify",
        "CME_NOTIFY_API_KEY": f"prefect-secret:{BLOCKS['notify_api_key']}",
        "CME_NOTIFY_BASE_URL": notify_url,
        "CME_NOTIFY_TEMPLATE_IDS": json.dumps({t: str(uuid.uuid4()) for t in TEMPLATES}),
        "CME_SMTP_USERNAME": "cme-mailer",
        "CME_SMTP_PASSWORD": s["smtp_password"],
    })
    return env


def _cli(stack: Any, *args: str) -> str:
    out = subprocess.run(  # noqa: S603 - our own console script
        [str(Path(sys.executable).parent / "cme"), *args], capture_output=True,
        text=True, env={**stack.flow_env(), "COLUMNS": "250"}, cwd=stack.home, timeout=120,
        check=False)
    return f"$ cme {' '.join(args)} (exit {out.returncode})\n{out.stdout}\n{out.stderr}"


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecretTrial]:
    from prefect.settings import temporary_settings

    from cme.cli_ui import free_port, start_stack, stop_stack
    from policy import london_date

    since = datetime.now(UTC) - timedelta(minutes=5)
    auth = new_auth_string()
    canaries = _canary_secrets(auth)
    notify = _FakeNotify()
    threading.Thread(target=notify.serve_forever, daemon=True).start()
    home = tmp_path_factory.mktemp("cme-ui-secrets")
    world = canary_world(16, 5, london_date(datetime.now(UTC)), hold_back=1,
                         mendix_password=canaries["mendix_password"])
    world.write(home / "sandbox-world")
    prefect_yaml = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    out = Console(stderr=True)
    port = free_port()
    sandbox_port = free_port()
    while sandbox_port == port:
        sandbox_port = free_port()
    stack = start_stack(home, port=port, sandbox_port=sandbox_port, auth=auth,
                        scheduler=False, out=out,
                        extra_env=_settings_env(canaries, notify.url),
                        secret_blocks={block: canaries[key] for key, block in BLOCKS.items()})
    procs = dict(stack.procs)
    try:
        with temporary_settings(updates=stack.prefect_settings()):
            today = world.world.today
            runs = {
                "intake": run("intake/intake", {}),
                "night": run("nightly-tracing/nightly", {"today": today.isoformat()}),
                "unknown": run("trace-referral/trace-referral",
                               {"reference": "CME-2026-999999"}),
                "report": run("case-report/case-report",
                              {"reference": world.import_records[0]["mendix_reference"]}),
            }
            t = SecretTrial(stack=stack, secrets=canaries, notify=notify, runs=runs,
                            harvest=harvest(stack, since), held_back=world.held_back,
                            prefect_yaml_before=prefect_yaml)
            t.harvest.texts["case_reports"] = list(t.harvest.case_reports.items())
            admin = httpx.get(f"{stack.api_url}/admin/settings", auth=stack.http_auth(),
                              timeout=10)
            t.harvest.add("admin_settings", "GET /api/admin/settings", admin.text)
            for args in (("connectors", "list"), ("connectors", "list", "--json"),
                         ("connectors", "check"), ("outbox", "--json"),
                         ("--debug", "connectors", "check")):
                t.cli[" ".join(args)] = _cli(stack, *args)
            yield t
    finally:
        stop_stack(stack, out=out)
        notify.shutdown()
        left = {name: p.pid for name, p in procs.items() if p.poll() is None}
        assert not left, f"processes left running: {left}"


def _report(hits: list[Any], limit: int = 15) -> str:
    return "\n".join(str(h) for h in hits[:limit]) + (
        f"\n… and {len(hits) - limit} more" if len(hits) > limit else "")


def test_the_flows_used_the_canary_credentials(trial: SecretTrial) -> None:
    """Positive control: the secrets were really in play (so their absence means something)."""
    assert trial.runs["intake"].state.is_completed(), trial.runs["intake"].state
    assert trial.runs["night"].state.is_completed(), trial.runs["night"].state
    assert trial.runs["unknown"].state.is_failed(), trial.runs["unknown"].state
    # The Mendix feed answers only to its canary password: the held-back referral came in.
    from sqlmodel import Session, select

    from models import Check, Referral, get_engine

    with Session(get_engine(trial.stack.db_url)) as s:
        got = s.exec(select(Referral.mendix_reference).where(
            Referral.mendix_reference == trial.held_back[0])).all()
        housing = s.exec(select(Check.error_code).where(Check.connector == "housing")).all()
    assert got, "the intake deployment did not read the Mendix feed"
    # The housing key came from its Secret block in the worker's flow run: no check failed
    # for want of it (an unreadable block makes every check `credentials_unavailable`).
    assert housing and "credentials_unavailable" not in housing, housing
    # Notify was called with JWTs signed by the canary key (and echoed them back).
    import jwt

    tokens = [t.split()[-1] for t in trial.notify.tokens if t]
    assert tokens, "the fake Notify was never called"
    jwt.decode(tokens[0], trial.secrets["notify_secret"], algorithms=["HS256"],
               options={"verify_iat": False})
    # The agencies were asked (with the bearer keys): `cme connectors check` is healthy.
    assert "(exit 0)" in trial.cli["connectors check"], trial.cli["connectors check"]
    print(f"\nsecrets trial: {len(trial.notify.tokens)} calls to Notify; "
          f"scanned {trial.harvest.counts()}, {len(trial.cli)} CLI outputs")


def test_the_scanner_would_catch_each_kind_of_secret(trial: SecretTrial) -> None:
    """Positive control: a credential where it belongs is found, in each form."""
    scanner = trial.scanner()
    world = (trial.stack.world_path).read_text(encoding="utf-8")  # the feed's password
    assert {h.what for h in scanner.hits("world", "world.json", world)} == {
        "secret mendix_password"}
    header = "Authorization: Basic " + base64.b64encode(
        trial.secrets["prefect_auth_pair"].encode()).decode()
    assert [h.what for h in scanner.hits("x", "header", header)] == [
        "secret prefect_auth basic header"]
    jwt_seen = next(t for t in trial.notify.tokens if t)
    assert scanner.hits("x", "echo", f'{{"message": "Invalid token: {jwt_seen}"}}')
    for name in BUILTINS:
        assert scanner.hits("x", "env", f"CME_{name.upper()}_API_KEY="
                            + trial.secrets[f"{name}_api_key"])


@pytest.mark.parametrize("source", ["logs", "flow_runs", "states", "task_runs", "deployments",
                                    "work_pools", "artifacts", "case_reports", "events",
                                    "result_storage", "admin_settings"])
def test_no_secret_reaches_the_prefect_server(trial: SecretTrial, source: str) -> None:
    hits = Harvest(texts={source: trial.harvest.texts.get(source, [])}).scan(trial.scanner())
    assert not hits, _report(hits)


def test_no_secret_in_the_console_output_of_server_worker_and_flow_runs(
        trial: SecretTrial) -> None:
    logs = {p.name: p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(trial.stack.logs.glob("*.log"))}
    # The sandbox plays the agencies, which are sent the keys by design.
    logs.pop("sandbox.log", None)
    assert {"server.log", "worker.log", "import.log", "deploy.log"} <= set(logs)
    hits = Harvest(texts={"console": list(logs.items())}).scan(trial.scanner())
    assert not hits, _report(hits)


def test_no_secret_in_the_cli_output(trial: SecretTrial) -> None:
    assert "other_la" in trial.cli["connectors list"]
    assert "[" in trial.cli["outbox --json"]  # the outbox was listed
    hits = Harvest(texts={"cli": list(trial.cli.items())}).scan(trial.scanner())
    assert not hits, _report(hits)


def test_no_secret_in_the_databases_or_the_stack_files(trial: SecretTrial) -> None:
    """Raw bytes of the Prefect server's database, the case database, and stack.json."""
    files = [p for p in trial.stack.prefect_home.rglob("*") if p.is_file()]
    files += [p for p in trial.stack.home.glob("cme.db*")]
    files.append(trial.stack.home / "stack.json")
    texts = [(str(p.relative_to(trial.stack.home)),
              p.read_bytes().decode("latin-1")) for p in files if p.exists()]
    assert any(name.endswith(".db") for name, _ in texts), [n for n, _ in texts]
    hits = Harvest(texts={"files": texts}).scan(trial.scanner())
    assert not hits, _report(hits)


def test_prefect_yaml_holds_no_settings_and_deploy_leaves_it_alone(trial: SecretTrial) -> None:
    now = (REPO / "prefect.yaml").read_text(encoding="utf-8")
    assert hashlib.sha256(now.encode()).digest() == hashlib.sha256(
        trial.prefect_yaml_before.encode()).digest(), "prefect deploy rewrote prefect.yaml"
    hits = trial.scanner().hits("prefect.yaml", "prefect.yaml", now)
    assert not hits, _report(hits)
    # Settings reach flows from the worker's environment, never from the deployments.
    code = [line.split("#", 1)[0] for line in now.splitlines()]
    assert not any("CME_" in line and "{{ $CME_HOME }}" not in line for line in code), code


@pytest.mark.parametrize("method,path", [
    ("POST", "/logs/filter"),
    ("POST", "/flow_runs/filter"),
    ("POST", "/task_runs/filter"),
    ("POST", "/artifacts/filter"),
    ("POST", "/events/filter"),
    ("POST", "/block_documents/filter"),
    ("POST", "/variables/filter"),
    ("GET", "/admin/settings"),
])
def test_with_basic_auth_the_endpoints_with_case_data_refuse_anonymous_calls(
        trial: SecretTrial, method: str, path: str) -> None:
    """test_e2e_server checks one endpoint; these are the ones that carry case data (the
    case report, parameters, logs, events) or configuration."""
    url = f"{trial.stack.api_url}{path}"
    body = {} if method == "POST" else None
    anonymous = httpx.request(method, url, json=body, timeout=10)
    officer = httpx.request(method, url, json=body, auth=trial.stack.http_auth(), timeout=10)
    assert anonymous.status_code == 401, (anonymous.status_code, anonymous.text[:200])
    assert officer.status_code == 200, (officer.status_code, officer.text[:200])


def test_the_case_report_itself_needs_the_auth_string(trial: SecretTrial) -> None:
    from prefect import get_client

    report_run = trial.runs["report"]
    assert report_run.state.is_completed(), report_run.state
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[report_run.id])))
    assert len(arts) == 1
    url = f"{trial.stack.api_url}/artifacts/{arts[0].id}"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, auth=("cme-officer", "guess"), timeout=10).status_code == 401
    got = httpx.get(url, auth=trial.stack.http_auth(), timeout=10)
    assert got.status_code == 200 and "Zqx" in got.text  # the canary child's name

