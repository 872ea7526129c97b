"""PostgreSQL grants for the API's database role: read the tables it serves (the uplift scores
among them, for the contact list; and the suppressions and SMS replies, which mark who may not
be messaged, and the campaigns, their recipients and outcomes, whose results it computes on
request), upsert the queue (whose size the triggers count in ``scoring_queue_size``; the upsert
reads ``leased_by`` and clears the ``leased_until`` of an entry waiting for a row due later).

The swapped tables keep their grants (partitions swapped under the parent, or rows replaced
in place: ``db/staged_table.py``); default privileges of the role that runs the pipeline grant
SELECT on every table it creates from then on as well.
"""

READ_TABLES = (
    "contacts",
    "lead_scores",
    "lead_score_history",
    "ml_lead_scores",
    "conversion_scores",
    "lead_scoring_analytics_history",
    "suppressions",
    "campaigns",
    "campaign_recipients",
    "campaign_outcomes",
    "uplift_scores",
)


def api_grants(api_role: str, pipeline_role: str, database: str) -> list[str]:
    """The statements, for quoted role and database names."""
    return [
        f"GRANT CONNECT ON DATABASE {database} TO {api_role}",
        f"GRANT USAGE ON SCHEMA public TO {api_role}",
        f"GRANT SELECT ON {', '.join(READ_TABLES)} TO {api_role}",
        (
            f"GRANT SELECT (id, phone_e164, body, received_at, processed_at) ON sms_replies "
            f"TO {api_role}"
        ),
        (
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {pipeline_role} IN SCHEMA public "
            f"GRANT SELECT ON TABLES TO {api_role}"
        ),
        (
            f"GRANT SELECT (contact_id, priority, version, created_at, updated_at, leased_by, "
            f"leased_until), INSERT (contact_id, priority, created_at, updated_at), "
            f"UPDATE (priority, updated_at, version, leased_until) ON scoring_queue "
            f"TO {api_role}"
        ),
        f"GRANT INSERT ON scoring_queue_size TO {api_role}",
    ]
