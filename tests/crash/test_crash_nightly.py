"""Crash safety of the nightly run (issue 8, point 2).

Each trial kills ``cme run nightly`` with SIGKILL at a seeded point — during an agency call,
while results or decisions are being written, between the decisions and the dispatch, in the
middle of sending — then runs the night again, and lets the next dispatch after the crashed
run's claims have lapsed do its work. The database must then equal an uninterrupted night's
(checks, statuses, outcomes, timeline, outbox rows), and no message may have been delivered
twice: counted where it arrives (the SMTP server, the GOV.UK Notify stand-in, the ``.eml``
files of the outbox folder).

What may legitimately differ: ids and timestamps (never compared), and, on SMTP, the rows a
kill left in ``sending``: SMTP cannot be asked whether a message arrived, so those rows end
``failed`` with the outcome-unknown note for an officer — never resent.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass

import pytest
from crashkit import (
    DISPATCH_POINTS,
    POINTS,
    Baseline,
    FileState,
    Snapshot,
    Trial,
    choose_at,
    differences,
    dispatch_after_lease,
    keys_with_status,
    killed,
    outbox_files,
    outbox_message_ids,
    points_for,
    snapshot,
    tail,
)

from models import NotificationStatus
from notifications import OUTCOME_UNKNOWN, FileChannel, message_id_for

SENDING = NotificationStatus.sending
SENT = NotificationStatus.sent
SEND_POINTS = frozenset({"send_before", "send_after"})


@dataclass(frozen=True)
class Plan:
    seed: int
    point: str
    channel: str

    def __str__(self) -> str:
        return f"{self.seed:02d}-{self.point}-{self.channel}"


#: Every kill point at least once; both send points on SMTP and on GOV.UK Notify.
TRIALS = [
    Plan(1, "agency_request", "file"),
    Plan(2, "agency_answer", "smtp"),
    Plan(3, "check_write", "notify"),
    Plan(4, "decision_write", "file"),
    Plan(5, "decided", "smtp"),
    Plan(6, "before_dispatch", "notify"),
    Plan(7, "send_before", "smtp"),
    Plan(8, "send_after", "smtp"),
    Plan(9, "send_before", "notify"),
    Plan(10, "send_after", "notify"),
    Plan(11, "send_after", "file"),
    Plan(12, "file_unrenamed", "file"),
    Plan(13, "before_mark_acknowledged", "smtp"),
]


@dataclass
class Deliveries:
    """What the receiving end holds, per idempotency key."""

    counts: dict[str, int]
    unexpected: list[str]


def _deliveries(trial: Trial, snap: Snapshot) -> Deliveries:
    keys = list(snap.notifications)
    if trial.channel == "notify":
        assert trial.notify is not None
        sends = trial.notify.sends()
        return Deliveries({k: sends.get(k, 0) for k in keys},
                          sorted(set(sends) - set(keys)))
    ids = {message_id_for(k): k for k in keys}
    if trial.channel == "smtp":
        assert trial.smtp is not None
        got = trial.smtp.message_ids()
    else:
        got = outbox_message_ids(trial.outbox)
    return Deliveries({k: got.get(mid, 0) for mid, k in ids.items()},
                      sorted(set(got) - set(ids)))


def _assert_at_most_once(trial: Trial, snap: Snapshot, interrupted: set[str],
                         files_at_crash: dict[str, FileState]) -> None:
    d = _deliveries(trial, snap)
    assert not d.unexpected, f"messages no outbox row accounts for: {d.unexpected}"
    twice = {k: n for k, n in d.counts.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    for key, n in d.counts.items():
        status = snap.outbox_status[key]
        if status == SENT.value:
            assert n == 1, f"{key} is marked sent but was delivered {n} times"
        elif key not in interrupted:
            assert n == 0, f"{key} is {status} but was delivered"
    if trial.channel == "file":
        # One file per delivered message, named for its row: nothing else reads as a message.
        names = {p.name for p in trial.outbox.glob("*.eml")}
        channel = FileChannel(trial.outbox)
        delivered = {channel.path_for(k).name for k, n in d.counts.items() if n}
        assert names == delivered, sorted(names ^ delivered)
        now = outbox_files(trial.outbox)
        rewritten = [name for name, st in files_at_crash.items()
                     if name.endswith(".eml") and now.get(name) != st]
        assert not rewritten, f"outbox files written again after the crash: {rewritten}"


def _assert_looked_up_before_resent(trial: Trial, interrupted: set[str], mark: int) -> None:
    """GOV.UK Notify: every send the crash left unresolved was asked about by its reference
    before anything was sent for it again."""
    assert trial.notify is not None
    after = trial.notify.requests[mark:]
    for key in interrupted:
        seen = [kind for kind, ref in after if ref == key]
        assert seen and seen[0] == "lookup", f"{key}: requests after the crash {seen}"
        assert seen.count("send") <= 1


def _timer_ms(plan: Plan, baseline: Baseline) -> int:
    return random.Random(f"{plan.seed}:timer").randint(1, max(2, baseline.night_ms))


def run_trial(plan: Plan, crash_trial, baseline: Baseline) -> None:  # type: ignore[no-untyped-def]
    trial: Trial = crash_trial(plan.channel)
    timer = plan.point == "timer"
    at = _timer_ms(plan, baseline) if timer else choose_at(plan.seed, plan.point,
                                                             baseline.reached)

    crash = trial.run_night(point=plan.point, at=at, label="crashed")
    if timer and crash.returncode == 0:
        pass  # the night finished before the timer: the rerun below must change nothing
    else:
        assert killed(crash), tail(crash)
        assert f"CRASHKIT killing at {plan.point} #{at}" in crash.stdout

    crashed = snapshot(trial.db_url)
    interrupted = keys_with_status(crashed, SENDING)
    if not timer:
        assert differences(baseline.snap, crashed), "the kill interrupted nothing"
        if plan.point in DISPATCH_POINTS:
            assert interrupted, "a kill while sending must leave a claimed row"
        else:
            assert not interrupted
    files_at_crash = outbox_files(trial.outbox)
    mark = len(trial.notify.requests) if trial.notify else 0

    rerun = trial.run_night(label="rerun")
    assert rerun.returncode == 0, tail(rerun)
    after_rerun = snapshot(trial.db_url)
    # A claim younger than its lease may be another dispatcher's: the rerun leaves it be.
    assert keys_with_status(after_rerun, SENDING) <= interrupted
    _assert_at_most_once(trial, after_rerun, interrupted, files_at_crash)

    later = dispatch_after_lease(trial)
    final = snapshot(trial.db_url)
    assert not keys_with_status(final, SENDING)
    _assert_at_most_once(trial, final, interrupted, files_at_crash)

    if trial.channel == "smtp":
        assert later["outcome_unknown"] == len(interrupted), later
        note = OUTCOME_UNKNOWN.format(channel="smtp")
        unknown = {k for k, err in final.last_errors.items()
                   if final.outbox_status[k] == NotificationStatus.failed.value
                   and (err or "").startswith(note)}
        assert unknown == interrupted, "exactly the interrupted sends are left for an officer"
        unacknowledged = {final.notifications[k][3] for k in unknown
                          if final.notifications[k][0] == "acknowledgement"}
        for ref in unacknowledged:
            # An acknowledgement that may not have gone is not recorded as sent.
            assert final.referrals[ref][5] is False, ref
        diff = differences(baseline.snap, final, ignore_keys=unknown,
                           ignore_acknowledged=unacknowledged)
    else:
        # Each interrupted row: found delivered by its lookup, or certainly not and sent now.
        assert later["recovered"] + later["sent"] == len(interrupted), later
        if plan.point == "send_after":
            assert later["recovered"] >= 1, later  # the killing row had been delivered
        if plan.point in ("send_before", "file_unrenamed"):
            assert later["sent"] >= 1, later  # the killing row had not
        if trial.channel == "notify":
            _assert_looked_up_before_resent(trial, interrupted, mark)
        diff = differences(baseline.snap, final)
    assert diff == [], "\n".join(diff[:40])


@pytest.mark.parametrize("plan", TRIALS, ids=str)
def test_crash_at_a_seeded_point_then_rerun_equals_an_uninterrupted_night(
    plan: Plan, crash_trial, crash_baseline: Baseline
) -> None:
    run_trial(plan, crash_trial, crash_baseline)


def test_crash_trials_cover_every_kill_point_and_channel(crash_baseline: Baseline) -> None:
    assert {p.point for p in TRIALS} == set(POINTS)
    for point in SEND_POINTS:
        assert {p.channel for p in TRIALS if p.point == point} >= {"smtp", "notify"}
    # Every point is reached by an uninterrupted night, more than once where it can be.
    assert all(crash_baseline.reached.get(p, 0) >= 1 for p in POINTS), crash_baseline.reached
    assert crash_baseline.reached["decided"] >= 3  # several chunks: kills between them


def test_crash_two_uninterrupted_nights_leave_the_same_database(
    crash_trial, crash_baseline: Baseline
) -> None:
    """The comparison is meaningful: without a crash the normalised database is the same."""
    trial = crash_trial("notify")
    proc = trial.run_night(label="again")
    assert proc.returncode == 0, tail(proc)
    snap = snapshot(trial.db_url)
    assert differences(crash_baseline.snap, snap) == []
    assert trial.notify is not None
    assert trial.notify.sends() == Counter(dict.fromkeys(snap.notifications, 1))


def _deep_selected(config: pytest.Config) -> bool:
    return "deep" in (config.getoption("markexpr") or "")


def _deep_trials() -> list[Plan]:
    n = int(os.environ.get("CRASHKIT_TRIALS", "40"))
    rng = random.Random(int(os.environ.get("CRASHKIT_SEED", "20261128")))
    plans = []
    for _ in range(n):
        channel = rng.choice(["file", "smtp", "notify"])
        plans.append(Plan(rng.randrange(10**6), rng.choice([*points_for(channel), "timer"]),
                          channel))
    return plans


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "deep_plan" in metafunc.fixturenames:
        plans = _deep_trials() if _deep_selected(metafunc.config) else [None]
        metafunc.parametrize("deep_plan", plans, ids=str)


@pytest.mark.deep
def test_crash_deep_random_points(deep_plan: Plan | None, request: pytest.FixtureRequest
                                  ) -> None:
    """More seeded trials, timer kills among them: ``-m deep`` (``CRASHKIT_TRIALS``, default
    40; ``CRASHKIT_SEED``)."""
    if deep_plan is None:
        pytest.skip("long crash fuzzing: run with -m deep")
    run_trial(deep_plan, request.getfixturevalue("crash_trial"),
              request.getfixturevalue("crash_baseline"))
