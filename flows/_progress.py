"""A progress hook the CLI sets when it runs a flow in its own process.

Flow parameters must be serialisable (and are shown in the UI), so a progress callback
cannot be one; the CLI sets this hook instead. In a worker it is unset and costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

Hook = Callable[..., None]
_hook: Hook | None = None


def set_hook(hook: Hook | None) -> None:
    global _hook
    _hook = hook


def report(**kwargs: int) -> None:
    if _hook is not None:
        _hook(**kwargs)
