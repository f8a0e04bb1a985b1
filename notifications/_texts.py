"""The message texts (Jinja2, plain text).

Kept as Python strings rather than ``.txt`` files so they ship inside the wheel whatever the
packaging rules say. Each template has ``<name>.subject`` and ``<name>.body``; ``_signoff``
is included by every message to a school or another LA.

The texts may only use the keys listed for them in :data:`notifications.templates.TEMPLATE_FIELDS`
and ``OPTIONAL_FIELDS``; codes are turned into words by the filters in ``templates.py``.
"""

from __future__ import annotations

TEXTS: dict[str, str] = {}

TEXTS["_signoff"] = """\
{{ team }}
{{ la_name }}
{% if team_contact %}
{{ team_contact }}
{% endif %}
"""

# --- acknowledgement (to the referring school) -------------------------------------------
TEXTS["acknowledgement.subject"] = "CME referral {{ reference }}: received"
TEXTS["acknowledgement.body"] = """\
Dear {{ school_name }},

Thank you for referral {{ reference }} (pupil {{ initials }}). The {{ team }} at \
{{ la_name }} has received it and is now making enquiries with other agencies to find \
where the child is.

We will tell you the outcome, and update you each half term while the case is open. Please \
keep recording the pupil's attendance, and do not remove the pupil from your admission \
register under regulation 9(1)(h) or 9(1)(i) until we have made a joint decision with you.

If you have a safeguarding concern about this child, follow your safeguarding procedures \
now; do not wait for us.

Please quote {{ reference }} in any reply.

{% include "_signoff" %}"""

# --- acknowledgement_reminder (internal: to the CME team's duty inbox) --------------------
TEXTS["acknowledgement_reminder.subject"] = "Acknowledgement overdue: CME referral {{ reference }}"
TEXTS["acknowledgement_reminder.body"] = """\
The acknowledgement of CME referral {{ reference }}\
{% if school_name %} from {{ school_name }}{% endif %} was due by \
{{ due_date | long_date }} (5 working days after it was received) and has not been sent.

Please check the case and acknowledge the referral today.
"""

# --- missing_school_actions (to the referring school) -------------------------------------
TEXTS["missing_school_actions.subject"] = "CME referral {{ reference }}: enquiries still needed"
TEXTS["missing_school_actions.body"] = """\
Dear {{ school_name }},

Referral {{ reference }} (pupil {{ initials }}) does not show that the school has made these \
enquiries:

{% for action in missing_actions %}
- {{ action | action_text }}
{% endfor %}

Hampshire's guidance asks schools to make these enquiries from the first day of unexplained \
absence. We have accepted the referral and started our own enquiries. Please make the \
enquiries above now and tell us what you find, quoting {{ reference }}.

{% include "_signoff" %}"""

# --- not_cme_signpost (to the referring school) -------------------------------------------
TEXTS["not_cme_signpost.subject"] = "CME referral {{ reference }}: not a child missing education"
TEXTS["not_cme_signpost.body"] = """\
Dear {{ school_name }},

Thank you for referral {{ reference }} (pupil {{ initials }}). We have recorded it, but the \
child is not missing education (nor a pupil missing out on education) because \
{{ reason | reason_text }}.

{% if signpost_team %}
Please contact the Inclusion Support Service's {{ signpost_team | team_text }} team\
{% if signpost_contact %} ({{ signpost_contact }}){% endif %}, who can help with this pupil.
{% else %}
No further action is needed by the {{ team }}.
{% endif %}

If the situation changes, please make a new referral.

{% include "_signoff" %}"""

# --- resolution (to the referring school), one text per outcome ---------------------------
TEXTS["resolution.subject"] = "CME referral {{ reference }}: {{ outcome | outcome_title }}"
TEXTS["resolution.body"] = """\
Dear {{ school_name }},

Our enquiries for referral {{ reference }} (pupil {{ initials }}) are complete.

{% set o = outcome | canonical_outcome %}
{% if o == "located" %}
The pupil is now on roll at another school. You may now delete the pupil from your admission \
register under regulation 9(1)(a) (registered at another school), if you have not already \
done so. The pupil's Common Transfer File (CTF) goes to the new school in the usual way.
{% elif o == "transferred" %}
The child is now living in another local authority's area\
{% if other_la_code %} (LA {{ other_la_code }}){% endif %}. \
{% if other_la_told %}We have written to that authority's Children Missing Education team, \
which now takes the lead.{% else %}We are passing the case to that authority's Children \
Missing Education team, which will then take the lead.{% endif %} If the pupil is still on \
your admission register, please contact us before removing them so that the right ground \
for deletion is recorded.
{% elif o == "left_uk" %}
The child has left the United Kingdom. If the pupil is still on your admission register you \
may now remove them. Please then send the pupil's Common Transfer File (CTF) to the Lost \
Pupil Database on the DfE's School to School (S2S) service with the destination code MMM \
(abroad or outside the maintained school system).
{% elif o == "whereabouts_unknown" %}
We have made reasonable enquiries with you and with other agencies and have not been able to \
find the child. An officer of the {{ team }} has reviewed those enquiries and, as our part \
of the joint decision the regulations require, the local authority agrees that the pupil \
may be deleted from your admission register under regulation 9(1)(i) (20 school days' \
continuous absence) or 9(1)(h) (not back 10 school days after leave ended), whichever \
applies. Our Inclusion Support Service can help if you need advice on this. Once the \
pupil is removed, please upload the pupil's Common Transfer File (CTF) to the Lost Pupil \
Database on the DfE's School to School (S2S) service with the destination code XXX \
(destination unknown). We keep the case open and continue to check each month.
{% endif %}

Please quote {{ reference }} in any reply.

{% include "_signoff" %}"""

# --- half_termly_update (to the referring school) -----------------------------------------
TEXTS["half_termly_update.subject"] = (
    "CME referrals: half-termly update{% if period %} ({{ period }}){% endif %}"
)
TEXTS["half_termly_update.body"] = """\
Dear {{ school_name }},

This is where the referrals your school made to the {{ team }} stand\
{% if period %} ({{ period }}){% endif %}:

{% for u in updates %}
- {{ u.reference }} (pupil {{ u.initials }}): {{ u.status | status_text }}
{% endfor %}

We will write again when a case is resolved, and otherwise next half term. Please tell us \
straight away if you hear from any of these families, quoting the reference.

{% include "_signoff" %}"""

# --- inter_la (to another LA's CME team) --------------------------------------------------
TEXTS["inter_la.subject"] = (
    "{% if forward %}PLEASE FORWARD to LA {{ other_la_code }}: {% endif %}"
    "Child missing education, our reference {{ reference }}: may be in your area"
)
TEXTS["inter_la.body"] = """\
{% if forward %}
FOR THE CME DUTY OFFICER — PLEASE FORWARD. We hold no contact address for the Children \
Missing Education team of LA {{ other_la_code or "(not stated)" }}. Please find that team's \
address, forward the message below to it, and add the LA to CME_OTHER_LA_CONTACTS so that \
the next message goes straight there.

-----
{% endif %}
To the Children Missing Education team{% if other_la_code %} (LA {{ other_la_code }}){% endif %},

{{ la_name }} is tracing a child missing education: our reference {{ reference }} \
(initials {{ initials }}). Our enquiries suggest the child may now live, or attend school, in \
your area.

For data protection this message holds no other details. Please contact us\
{% if team_contact %} at {{ team_contact }}{% else %} by replying to this email{% endif %}, \
quoting {{ reference }}, and we will share what you need securely.

{% include "_signoff" %}"""

# --- safeguarding_task (internal: to the CME team's duty inbox) ---------------------------
TEXTS["safeguarding_task.subject"] = "URGENT: a person must review CME case {{ reference }} now"
TEXTS["safeguarding_task.body"] = """\
A person must review CME case {{ reference }} now.

{% if raised_by %}
The concern was raised by {{ raised_by | agency_text }}.

{% endif %}
{% if rule %}
It was flagged by rule "{{ rule }}".

{% endif %}
The details are in the case record, not in this email. Decide whether an inter-agency \
referral form (IARF) to the Children's Reception Team, or a call to the police, is needed. \
The system will not close or clear this case by itself.
"""

# --- pmooe_attendance (to the school: its pupil met a PMOOE threshold in attendance data) ----
TEXTS["pmooe_attendance.subject"] = (
    "Pupil missing out on education {{ reference }}: your enquiries please")
TEXTS["pmooe_attendance.body"] = """\
Dear {{ school_name }},

The attendance data the {{ team }} at {{ la_name }} receives shows that a pupil on your roll\
{% if initials %} ({{ initials }}){% endif %} {{ pmooe_reason | pmooe_text }}, as of \
{{ met_on | long_date }}. Under the guidance this pupil is missing out on education, and we \
have opened case {{ reference }}.

Please make your enquiries now, as for a child missing education: phone or text the parents \
or carers, write to or visit the family, and contact other schools and any agency involved. \
Tell us what you find, quoting {{ reference }}, and keep recording the pupil's attendance. \
If the pupil returns, the register will show it and we will close the case.

If you have a safeguarding concern about this pupil, follow your safeguarding procedures \
now; do not wait for us.

{% include "_signoff" %}"""

# --- delivery_failing (internal: to the duty inbox, through the file channel) --------------
TEXTS["delivery_failing.subject"] = (
    "CME notifications are not going out through {{ channel }}: {{ failing }} waiting, "
    "{{ gave_up }} given up"
)
TEXTS["delivery_failing.body"] = """\
Messages from the CME pipeline are not being delivered through the {{ channel }} channel.

{{ failing }} message(s) have kept failing{% if failing_since %} since \
{{ failing_since | long_date }}{% endif %}; they are tried again every hour\
{% if retry_days %} for {{ retry_days }} days from their first attempt{% endif %}.
{{ gave_up }} message(s) have been given up and wait for an officer.

Acknowledgements and safeguarding tasks may be among them. Please:
- ask whoever runs the {{ channel }} service to look at it;
- see what is waiting: cme outbox --status pending, and cme outbox --status failed;
- once it works again, send the given-up ones: cme outbox retry (or cme outbox retry --ref REF
  for one case);
- check the worklist for cases whose messages did not go.

This message was written to the outbox folder because the usual channel is failing. At most \
one is written a day.
"""
