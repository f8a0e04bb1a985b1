"""Decisions waiting for an officer, where the Prefect UI shows them (issue 15, point 2).

When the rulebook hands a case to a person (a proposal: whereabouts unknown — the joint
deletion decision —, a possible match, an outcome outside ``CME_AUTOMATIC_OUTCOMES``), the
night starts one ``await-decision`` run for it, named ``decide CME-2026-000123: whereabouts
unknown``. The run writes what the rulebook proposes and what the agencies said (references
and codes only) and **suspends** with a form (Prefect's interactive workflows,
``suspend_flow_run(wait_for_input=...)``): no process is held while it waits. In the UI the
run shows as *Suspended*; the officer opens it, clicks **Resume**, answers the form, and the
run starts again on a worker and applies the decision exactly as the ``decide-case`` flow
does. A decision made meanwhile with ``decide-case`` cancels the waiting run.

Needs the ``await-decision`` deployment (``prefect.yaml``): without it (the demo, a bare
``cme run nightly``) the decisions simply wait on the worklist for ``decide-case``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import asuspend_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled, Completed, State
from pydantic import ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from sqlmodel import Session, col, select

from connectors import CheckEvidence
from flows._config import db_url
from flows.adhoc import (
    DecisionReason,
    OfficerDecision,
    check_case,
    choice_of,
    form,
    normalise_reference,
    officer_decides,
    reference_field,
    refused,
)
from models import Check, Referral, get_engine
from tasks.reports import london_when

__all__ = ["DEPLOYMENT", "DecisionForm", "OfficerForm", "await_decision", "cancel_waiting",
           "decision_form", "start_waiting"]

#: ``flow name/deployment name`` of the waiting runs.
DEPLOYMENT = "await-decision/await-decision"

_WORDS = {
    "whereabouts_unknown": "whereabouts unknown",
    "on_roll_elsewhere": "on roll at another school",
    "resident_other_la": "living in another LA",
    "left_uk": "left the UK",
    "located_in_area_not_on_roll": "living in our area, not on roll",
}


def _prefilled_answers_stay_required(schema: dict[str, Any], model: type[Any]) -> None:
    keep = getattr(model, "_prefilled_answers", ())
    if keep:
        schema["required"] = sorted(set(schema.get("required", [])) | set(keep))


class OfficerForm(RunInput):
    """A form an officer answers on a suspended run, in words however it is filled in.

    Prefect's ``RunInput.with_initial_data`` rebuilds each pre-filled field from its bare
    type: a choice loses its title and description (the UI then labels it with the choice's
    class name, "OfficerDecision (Optional)") and, having a default, turns optional. Here
    a pre-filled field keeps everything it was declared with, and an answer the form
    requires stays required (pre-selected, not "(Optional)").
    """

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra=_prefilled_answers_stay_required)

    @classmethod
    def with_initial_data(cls, description: str | None = None,
                          **kwargs: Any) -> type[Self]:
        """This form with ``kwargs`` pre-filled and ``description`` shown above it."""
        unknown = sorted(set(kwargs) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
        fields: dict[str, Any] = {
            k: (cls.model_fields[k].annotation,
                FieldInfo.merge_field_infos(cls.model_fields[k], default=v))
            for k, v in kwargs.items()}
        model: type[Self] = create_model(cls.__name__, __base__=cls, **fields)
        model._prefilled_answers = tuple(  # type: ignore[attr-defined]
            k for k in kwargs if cls.model_fields[k].is_required())
        if description is not None:
            model._description = description
        return model


class DecisionForm(OfficerForm):
    """The form an officer answers on a waiting run (Resume): your decision on this case."""

    model_config = ConfigDict(title="Your decision")

    decision: choice_of(OfficerDecision, "Your decision",  # type: ignore[valid-type]
                        "What you decided on this case.")
    reason: choice_of(DecisionReason, "Why", "Why you decided so.")  # type: ignore[valid-type]
    la_code: str = Field(default="", title="LA code", max_length=3,
                         description="Only for 'living in another local authority's area': "
                         "that LA's 3-digit code, e.g. 852. Otherwise leave blank.")
    note: str = Field(default="", title="Note", max_length=500,
                      description="A short note for the timeline. Do not type names, dates "
                      "of birth or addresses.")


def decision_form(description: str) -> type[DecisionForm]:
    """The Resume form of a waiting run: ``description`` above it, *Confirm* and *I checked
    the evidence* pre-selected."""
    return DecisionForm.with_initial_data(
        description=description, decision=OfficerDecision.confirm,
        reason=DecisionReason.evidence_checked)


def _name() -> str:
    from prefect.runtime import flow_run

    params = flow_run.parameters or {}
    ref = normalise_reference(params.get("reference"))
    proposed = _WORDS.get(str(params.get("proposed")), "a decision")
    return f"decide {ref}: {proposed}"


def _evidence_lines(s: Session, r: Referral) -> list[str]:
    """What each agency said last, in codes (no addresses, names or dates of birth)."""
    latest: dict[str, Check] = {}
    for c in s.exec(select(Check).where(Check.referral_id == r.id)
                    .order_by(col(Check.round), col(Check.id))):
        latest[c.connector] = c
    out = []
    for name, c in sorted(latest.items()):
        facts = []
        stored = CheckEvidence.read(c.evidence)
        if stored.problem:
            # Say so: an answer that cannot be read is not "nothing found".
            facts.append(stored.problem)
        for e in stored.items:
            bits: list[str] = [e.kind]
            if e.school_urn:
                bits.append(f"school URN {e.school_urn}")
            if e.la_code:
                bits.append(f"LA {e.la_code}")
            if e.kind == "departure" and e.departure_country:
                bits.append(f"to {e.departure_country}")
            bits.append(f"matched on {e.match_basis or 'names (not said)'}")
            facts.append(" ".join(bits))
        out.append(f"- **{name}** (round {c.round}): {c.outcome.value}"
                   + (f" — {'; '.join(facts)}" if facts else ""))
    return out


@flow(name="await-decision", flow_run_name=_name, persist_result=True)
async def await_decision(
    reference: str = reference_field(),
    proposed: str = form("", "Proposed", "What the rulebook proposed (set by the night).",
                         max_length=40),
) -> dict[str, Any] | State:
    """Wait, without holding a process, for an officer's decision on one case the rulebook
    handed to a person; then apply it (as Decide case does). Started by the night.

    Args:
        reference: The case's reference, e.g. CME-2026-000123.
        proposed: What the rulebook proposed (set by the night).
    """
    with Session(get_engine(db_url())) as s:
        r, why = check_case(s, reference)
        if r is None:
            return refused(why or "")
        ref = r.mendix_reference
        now = r.proposed_outcome.value if r.proposed_outcome else None
        if now is None or (proposed and now != proposed):
            return Completed(message=f"Case {ref} no longer waits for this decision (it was "
                             "decided or changed since): nothing to do")
        lines = _evidence_lines(s, r)
        since = r.proposed_at
    what = _WORDS.get(now, now)
    description = "\n".join([
        f"## Case {ref}: the rulebook proposes **{what}**",
        "",
        f"Waiting for an officer since {london_when(since)}." if since else "",
        "",
        "What the agencies said last:",
        "",
        *(lines or ["- nothing yet"]),
        "",
        "For the full evidence (addresses as held, the timeline), run **case-report** for "
        f"{ref} first. Then choose below: *Confirm* does what is proposed and sends its "
        "letters" + (" (the joint deletion decision with the school)"
                     if now == "whereabouts_unknown" else "")
        + "; *Reject* keeps tracing; or choose another outcome.",
    ])
    form = await asuspend_flow_run(
        wait_for_input=decision_form(description),
        key="decide-" + now.replace("_", "-"),
    )
    return await officer_decides(ref, form.decision, form.reason, la_code=form.la_code,
                                 note=form.note, expect_proposal=now)


async def start_waiting(db: str, since: datetime) -> int:
    """One waiting run for every proposal made since ``since``; returns how many were
    started (0, and says so once, when the deployment is not deployed)."""
    with Session(get_engine(db)) as s:
        rows = s.exec(select(Referral.mendix_reference, Referral.proposed_outcome).where(
            col(Referral.proposed_at) >= since, col(Referral.proposed_outcome).is_not(None)))
        todo = [(ref, p.value) for ref, p in rows if p is not None]
    if not todo:
        return 0
    from prefect.deployments import arun_deployment

    started = 0
    for ref, proposed in todo:
        try:
            await arun_deployment(DEPLOYMENT, parameters={"reference": ref, "proposed": proposed},
                                  timeout=0, as_subflow=False,
                                  flow_run_name=f"decide {ref}: {_WORDS.get(proposed, proposed)}")
        except ObjectNotFound:
            get_run_logger().info("%d decisions wait for an officer on the worklist (the "
                                  "await-decision deployment is not deployed here)", len(todo))
            return started
        started += 1
    return started


async def cancel_waiting(reference: str, *, why: str) -> int:
    """Cancel the suspended waiting runs of ``reference`` (the decision was made another
    way); returns how many were cancelled."""
    cancelled = 0
    try:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED, StateType.SCHEDULED]))),
                deployment_filter=DeploymentFilter(
                    name=DeploymentFilterName(any_=[DEPLOYMENT.split("/")[1]])),
                limit=200,
            )
            for run in runs:
                if normalise_reference((run.parameters or {}).get("reference")) == reference:
                    await client.set_flow_run_state(run.id, Cancelled(message=why), force=True)
                    cancelled += 1
    except Exception as exc:  # noqa: BLE001 - the decision is made; a stale form says so itself
        get_run_logger().warning("could not cancel the waiting run of %s (%s)", reference,
                                 type(exc).__name__)
    return cancelled
