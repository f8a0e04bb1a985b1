"""Shared values of the flow tests (imported by name; tests dirs are not packages)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

BUILTINS = "other_la,housing,lpd,dwp,border_force"


@dataclass
class DemoWorld:
    root: Path
    world_path: Path
    referrals_path: Path
    today: date
    world: object
    referrals: list[dict[str, object]]
    db_url: str

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"
