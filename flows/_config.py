"""Build the tasks' plain config objects from the settings (flows only)."""

from __future__ import annotations

import logging
import uuid
from datetime import date
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from connectors import available
from flows.settings import Settings, get_settings
from tasks.dispatch import DispatchConfig
from tasks.errors import ConfigError
from tasks.intake import IntakeConfig
from tasks.tracing import TraceConfig

# httpx logs every request URL at INFO. Our URLs carry no personal data (the conformance kit
# checks), but a line per request is noise and a risk: the application keeps it at WARNING
# unless configured otherwise. (The connectors library itself leaves logging alone.)
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)


def db_url() -> str:
    """The case database's URL, from the settings (``CME_DATABASE_URL``)."""
    return get_settings().database_url


def run_id() -> str:
    try:
        from prefect.runtime import flow_run

        rid = flow_run.get_id()
        if rid:
            return str(rid)
    except Exception:  # noqa: BLE001, S110 - outside a flow run there is no id
        pass
    return uuid.uuid4().hex


def official_connectors() -> tuple[str, ...]:
    """Installed connectors that answer from official records (class attribute ``official``),
    enabled or not: an answer an officer recorded carries the agency's name too."""
    return tuple(sorted(n for n, info in available().connectors.items() if info.official))


def trace_config(today: date, settings: Settings | None = None,
                 connectors: list[str] | None = None) -> TraceConfig:
    """``connectors``: the agencies to ask now (default all enabled); the rulebook always
    waits for every enabled one (``enabled_connectors``)."""
    s = settings or get_settings()
    return TraceConfig(
        db_url=s.database_url,
        connectors=tuple(connectors if connectors is not None else s.connectors),
        enabled_connectors=tuple(s.connectors),
        official_connectors=official_connectors(),
        automatic_outcomes=tuple(s.automatic_outcomes),
        match_threshold=s.match_threshold,
        today=today,
        run_id=run_id(),
        channel=s.notification_channel,
        home_la=s.home_la,
        min_rounds=s.min_rounds,
        duty_inbox=s.duty_inbox,
        la_name=s.la_name,
        other_la_contacts=dict(s.other_la_contacts),
        sandbox_world=str(s.sandbox_world) if s.sandbox_world else None,
        agency_environment=s.agency_environment,
    )


def intake_config(settings: Settings | None = None) -> IntakeConfig:
    s = settings or get_settings()
    return IntakeConfig(
        db_url=s.database_url, channel=s.notification_channel, duty_inbox=s.duty_inbox,
        la_name=s.la_name, signpost_contacts=dict(s.signpost_contacts),
    )


def dispatch_config(settings: Settings | None = None) -> DispatchConfig:
    s = settings or get_settings()
    return DispatchConfig(db_url=s.database_url, channel=s.notification_channel,
                          channel_options=s.channel_options(), retry_days=s.notification_retry_days,
                          duty_inbox=s.duty_inbox, outbox_dir=str(s.outbox_dir),
                          sender_name=f"{s.la_name} CME team", mail_from=s.mail_from,
                          la_name=s.la_name)


def task_runner(settings: Settings | None = None) -> TaskRunner[Any]:
    """The nightly flow's task runner, from ``CME_TASK_RUNNER``.

    ``thread``: a bounded thread pool (``CME_MAX_WORKERS``). ``dask``: prefect-dask's
    ``DaskTaskRunner``, on the scheduler at ``CME_DASK_ADDRESS`` or else on a temporary
    ``LocalCluster`` of ``CME_DASK_WORKERS`` processes with ``CME_MAX_WORKERS`` threads each.
    Tasks receive ids and plain config, so they run unchanged in another process.
    """
    try:
        s = settings or get_settings()
    except ConfigError:
        # Called by the nightly flow's decorator, at import: a wrong setting must not stop
        # the module loading (a worker would report a traceback, not the setting); the run
        # then fails at its start with the one line naming it (run_nightly reads settings).
        return ThreadPoolTaskRunner(max_workers=1)
    if s.task_runner == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ModuleNotFoundError as exc:
            raise ConfigError("CME_TASK_RUNNER=dask needs prefect-dask: "
                              "pip install 'cme-tracing[dask]'") from exc

        if s.dask_address:
            return DaskTaskRunner(address=s.dask_address)
        return DaskTaskRunner(cluster_kwargs={
            "n_workers": s.dask_workers, "threads_per_worker": s.max_workers,
            "processes": True, "dashboard_address": None,
        })
    return ThreadPoolTaskRunner(max_workers=s.max_workers)
