"""Prefect tasks and the plain functions behind them: intake, tracing, dispatch, retention.

Tasks receive ids and frozen configs (built by ``flows/_config.py`` from the settings) and
never read settings or import the CLI (docs/architecture.md). Other packages may use the
public modules here and the names below; ``tasks._*`` modules are this package's own.
"""

from tasks._agencies import mendix_transport
from tasks._common import event

__all__ = ["event", "mendix_transport"]
