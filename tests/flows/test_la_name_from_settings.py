"""A pipeline configured for another LA (CME_LA_NAME) names that LA in every letter it queues,
not the templates' fallback (issue 16: configuration in one place)."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from models import Notification, get_engine
from notifications import render
from tasks.intake import ingest_records
from tests.la_configs import intake_config

RECORD = {
    "mendix_reference": "CME-2026-900101",
    "kind": "CME",
    "received_at": "2026-11-28T10:00:00+00:00",
    "school": {"urn": "116000", "name": "Test Primary", "la_code": "999",
               "email": "office@school.example.org"},
    "child": {"upn": "H801200001001", "forename": "Zebedee", "surname": "Quillfeather",
              "dob": "2015-02-28", "address": {"line1": "1 Synthetic Row",
                                               "town": "Testbury", "postcode": "SO23 8UJ"}},
    "on_roll": False,
    "school_actions": [{"action": a, "date": "2026-11-20"} for a in
                       ("phone_parents", "email_letter_or_visit", "contact_other_schools",
                        "ask_peers")],
}


def test_the_acknowledgement_names_the_configured_la(clean_db: str) -> None:
    cfg = intake_config(db_url=clean_db, la_name="Testshire Council")
    report = ingest_records([(1, json.dumps(RECORD))], source="test.jsonl", cfg=cfg)
    assert report.created == 1
    with Session(get_engine(clean_db)) as s:
        [note] = s.exec(select(Notification)).all()
    letter = render(note.template, note.personalisation)
    assert "Testshire Council" in letter.body, letter.body
    assert "Hampshire" not in letter.subject + letter.body, letter.body
