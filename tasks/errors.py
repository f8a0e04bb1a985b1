"""Errors below the command line whose message is written for a person.

    PipelineError       one clear line for the operator or officer (the CLI prints it and
    │                   exits 1; a flow run's log shows it), never a child's data
    └── ConfigError     a setting is missing or wrong (says which and how to fix it)

They live here, under ``flows`` and the CLI, so that configuration (``flows.settings``), the
flows and the tasks raise them without importing the CLI (docs/architecture.md: the layers).
The CLI's own errors (``cme.errors.CmeError``) derive from :class:`PipelineError`.
"""

from __future__ import annotations

__all__ = ["ConfigError", "PipelineError"]


class PipelineError(Exception):
    """An error whose message is written for the person at the terminal or reading the log."""


class ConfigError(PipelineError):
    """A setting is missing or wrong."""
