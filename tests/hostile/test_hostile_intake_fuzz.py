"""Hostile and malformed referral records through intake (issue 8, point 3).

Hypothesis generates batches of input lines — valid synthetic referrals, near-valid ones
(wrong UPN check letter, missing fields, bad dates, future dates of birth, over-long and
over-large strings, names in other scripts or without a letter, wrong types, nulls, extra
fields, lone surrogates, NUL characters, non-ASCII digits, bad register marks, repeated
Mendix references, the same child again) and junk lines (not JSON, arrays, numbers, deep
nesting, truncated, BOM, binary) — and ingests each batch into an empty database. For every
batch:

- intake returns (it never raises);
- count in = created + updated + duplicates linked + not CME + quarantined + unchanged,
  checked against the report *and* against the rows in the database;
- every line that must be quarantined is, kept whole, with structured reasons that name the
  field and repeat no personal data; every line that must be accepted is.

Runs:

- ``test_hostile_intake_fuzz_ci`` — every run: at least ``CI_RECORDS`` (2,000) generated
  lines through intake, in batches of 20-30 (one empty database per batch).
- ``test_hostile_intake_fuzz_deep`` — marker ``deep``, on demand only: ``pytest -m deep
  tests/hostile`` or ``CME_DEEP=1 pytest tests/hostile`` (at least ``DEEP_RECORDS``,
  20,000 lines). Without either it skips, saying how to run it.

Both pass on SQLite and on PostgreSQL (``CME_TEST_DATABASE_URL``).
"""

from __future__ import annotations

import pytest
from hostile_kit import (
    Generated,
    Tally,
    check_intake,
    numbered,
    referral_batch,
    reset_db,
    skip_unless_deep,
)
from hypothesis import HealthCheck, Phase, given, settings

from tasks.intake import ingest_records
from tests.la_configs import intake_config

CI_RECORDS = 2_000
DEEP_RECORDS = 20_000
BATCH = (20, 30)


def _fuzz(db_url: str, examples: int) -> Tally:
    """Run ``examples`` generated batches through intake; return what went through."""
    cfg = intake_config(db_url=db_url)
    tally = Tally()

    # No shrinking: a failing batch is reported as generated, each line labelled with what
    # it is and what intake owed it; shrinking 20-30 database round trips takes minutes.
    @settings(max_examples=examples, deadline=None, print_blob=True,
              phases=[Phase.explicit, Phase.reuse, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(batch=referral_batch(*BATCH))
    def one_batch(batch: list[Generated]) -> None:
        reset_db(db_url)
        report = ingest_records(numbered(batch), source="hostile.jsonl", cfg=cfg)
        check_intake(db_url, batch, report, tally)

    one_batch()
    return tally


def _assert_coverage(tally: Tally, minimum: int) -> None:
    assert tally.records >= minimum, f"only {tally.records} generated records reached intake"
    # Both sides of the line were exercised, not just one kind of input.
    assert tally.outcomes["quarantined"] > minimum // 10, tally.outcomes
    assert tally.outcomes["created"] > minimum // 10, tally.outcomes
    assert tally.outcomes["updated"] + tally.outcomes["unchanged"] > 0, tally.outcomes
    # The same child again (linked: same UPN) or possibly (same surname and date of birth).
    assert tally.outcomes["duplicates_linked"] + tally.outcomes["possible_duplicates"] > 0, \
        tally.outcomes
    assert sum(n for label, n in tally.by_label.items() if label.startswith("junk:")) > 0


def test_hostile_intake_fuzz_ci(clean_db: str) -> None:
    examples = -(-CI_RECORDS // BATCH[0])  # enough batches even if every one is the smallest
    tally = _fuzz(clean_db, examples)
    _assert_coverage(tally, CI_RECORDS)


@pytest.mark.deep
def test_hostile_intake_fuzz_deep(clean_db: str, request: pytest.FixtureRequest) -> None:
    skip_unless_deep(request.config)
    examples = -(-DEEP_RECORDS // BATCH[0])
    tally = _fuzz(clean_db, examples)
    _assert_coverage(tally, DEEP_RECORDS)
