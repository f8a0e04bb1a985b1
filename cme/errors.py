"""User-facing errors of the ``cme`` command line.

    CmeError            anything the CLI reports as one clear line and exit code 1
    └── ConfigError     a setting is missing or wrong (says which and how to fix it)
"""

from __future__ import annotations

__all__ = ["CmeError", "ConfigError"]


class CmeError(Exception):
    """An error whose message is written for the person at the terminal."""


class ConfigError(CmeError):
    """A setting is missing or wrong."""
