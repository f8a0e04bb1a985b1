"""The built-in connectors. Registered through entry points like any other package's."""

from .border_force import BorderForceConnector
from .dwp import DWPConnector
from .housing import HousingConnector
from .lpd import LPDConnector
from .other_la import OtherLAConnector

__all__ = [
    "BorderForceConnector",
    "DWPConnector",
    "HousingConnector",
    "LPDConnector",
    "OtherLAConnector",
]
