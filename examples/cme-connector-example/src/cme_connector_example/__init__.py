"""An example agency connector distributed as its own package."""

from .connector import HealthVisitorConnector

__all__ = ["HealthVisitorConnector"]
