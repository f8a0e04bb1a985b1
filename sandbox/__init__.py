"""The simulated outside world: agencies, the Mendix referral source, synthetic people.

In process::

    world, referrals = generate_world(children=200, seed=7)
    sb = Sandbox(world, FaultProfile(), today=world.today)
    outcomes = await run_connector(connector, subjects, transport=asgi_transport(sb))

with connector settings from :func:`connector_settings` (``base_url="http://sandbox"``).
As a server: ``cme sandbox serve --world W --faults F --port P`` (127.0.0.1).
"""

from ._app import Sandbox, SeenRequest, agency_of, asgi_transport
from ._config import (
    connector_env,
    connector_settings,
    export_openapi,
    subject_for,
    subject_from_referral,
    write_generated,
    write_schemas,
)
from ._environment import SANDBOX_BASE, SandboxEnvironment, clear_sandboxes, sandbox_for
from ._generator import HOME_LA, OTHER_LAS, SCENARIOS, generate_world
from ._world import (
    AGENCIES,
    AgencyFaults,
    BorderForceRecord,
    CTFRecord,
    DWPRecord,
    FaultProfile,
    HousingRecord,
    LARecord,
    MendixSource,
    Movement,
    World,
    WorldChild,
    load_faults,
    load_world,
)

__all__ = [
    "AGENCIES",
    "HOME_LA",
    "OTHER_LAS",
    "SANDBOX_BASE",
    "SCENARIOS",
    "AgencyFaults",
    "BorderForceRecord",
    "CTFRecord",
    "DWPRecord",
    "FaultProfile",
    "HousingRecord",
    "LARecord",
    "MendixSource",
    "Movement",
    "Sandbox",
    "SandboxEnvironment",
    "SeenRequest",
    "World",
    "WorldChild",
    "agency_of",
    "asgi_transport",
    "clear_sandboxes",
    "connector_env",
    "connector_settings",
    "export_openapi",
    "generate_world",
    "load_faults",
    "load_world",
    "sandbox_for",
    "subject_for",
    "subject_from_referral",
    "write_generated",
    "write_schemas",
]
