"""Connector entry points for these tests (see tests/connector_entry_points.py)."""

from tests.connector_entry_points import connector_entry_points

__all__ = ["connector_entry_points"]
