"""User-facing errors of the ``cme`` command line.

    PipelineError (tasks.errors)   anything the CLI reports as one clear line and exit code 1
    ├── ConfigError (tasks.errors) a setting is missing or wrong (flows.settings raises it)
    └── CmeError                   the command line's own: a wrong argument, a missing file

The lower layers raise their own :class:`~tasks.errors.PipelineError` subclasses (they never
import the CLI: docs/architecture.md); ``cme.cli.main`` prints any of them as one line.
"""

from __future__ import annotations

from tasks.errors import ConfigError, PipelineError

__all__ = ["CmeError", "ConfigError", "PipelineError"]


class CmeError(PipelineError):
    """An error of the command line itself, written for the person at the terminal."""
