"""Prefect flows: where the pipeline is wired together.

Flows read the settings once (``flows.settings``), build the tasks' frozen configs
(``flows/_config.py``) and hand them down; the CLI (``cme``) is the only package above
(docs/architecture.md). ``set_progress_hook`` lets the CLI show a flow's progress.
"""

from flows._progress import set_hook as set_progress_hook

__all__ = ["set_progress_hook"]
