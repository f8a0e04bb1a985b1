"""Idempotency-key formats live in one module, ``notifications.keys`` (issue 16: configuration
in one place), and keep the formats the outbox already holds (a changed format would send
every message of its kind again)."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

from notifications import keys

ROOT = Path(__file__).resolve().parents[2]


def test_each_key_keeps_the_format_the_outbox_holds() -> None:
    assert keys.acknowledgement("CME-2026-000001") == "ack:CME-2026-000001"
    assert keys.not_cme("CME-2026-000001") == "not_cme:CME-2026-000001"
    assert keys.missing_information("CME-2026-000001") == "missing:CME-2026-000001"
    assert keys.resolution("CME-2026-000001", "left_uk") == "resolution:CME-2026-000001:left_uk"
    assert keys.inter_la("CME-2026-000001", "851") == "inter_la:CME-2026-000001:851"
    assert keys.safeguarding("CME-2026-000001", "school") == "safeguarding:CME-2026-000001:intake"
    assert keys.safeguarding("CME-2026-000001", "lpd") == "safeguarding:CME-2026-000001:agency:lpd"
    assert keys.pmooe_attendance("CME-2026-000001") == "pmooe_att:CME-2026-000001"
    assert keys.half_termly_update("100001", "2026-au1") == "half_termly:100001:2026-au1"
    assert keys.acknowledgement_reminder("CME-2026-000001") == "ack_reminder:CME-2026-000001"
    assert keys.delivery_failing("smtp", date(2026, 12, 4)) == "delivery-failing:smtp:2026-12-04"


def _key_prefixes() -> set[str]:
    """The literal start of every format in notifications/keys.py (``ack:``, ...)."""
    tree = ast.parse((ROOT / "notifications" / "keys.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values and isinstance(
                node.values[0], ast.Constant) and str(node.values[0].value).endswith(":"):
            out.add(str(node.values[0].value))
    return out


def test_no_other_module_builds_an_idempotency_key() -> None:
    prefixes = _key_prefixes()
    assert {"ack:", "resolution:", "inter_la:", "half_termly:"} <= prefixes, prefixes
    found = []
    for folder in ("tasks", "flows", "notifications", "cme"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "notifications" / "keys.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr) and node.values and isinstance(
                        node.values[0], ast.Constant) and str(node.values[0].value) in prefixes:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if isinstance(node, ast.keyword) and node.arg == "idempotency_key" and \
                        isinstance(node.value, ast.JoinedStr):
                    found.append(f"{path.relative_to(ROOT)}:{node.value.lineno}")
    assert not found, f"idempotency keys built outside notifications/keys.py: {found}"
