"""Hard bounces: a number not delivered in each of its last three campaigns is suppressed as
``hard_bounce`` until it is delivered again.

A number is the contact's ``phone_e164`` (E.164, as the platform stores it; other forms are
left out); contacts sharing a number count their campaigns together, a campaign counting once
and as delivered if any of them got it. Campaigns are ordered by ``sent_at`` (then id). Only
sends count: a control-arm recipient (``campaign_recipients.arm = 'control'``) and an outcome
without ``delivered`` are no send. The rows this module writes have ``source = 'campaigns
<ids>'`` (oldest first); a ``hard_bounce`` row from elsewhere (an import) is left alone.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from lead_scoring_assets.db.database import Database

CAMPAIGNS = 3
STAGING = "hard_bounces_now"
SOURCE_PREFIX = "campaigns "
BOUNCING = f"""
WITH sends AS (
    SELECT k.phone_e164 AS phone, c.id AS campaign_id, c.sent_at,
           max(CASE WHEN o.delivered THEN 1 ELSE 0 END) AS delivered
    FROM campaign_outcomes o
    JOIN contacts k ON k.id = o.contact_id
    JOIN campaigns c ON c.id = o.campaign_id
    WHERE o.delivered IS NOT NULL
      AND k.phone_e164 LIKE '+52__________' AND length(k.phone_e164) = 13
      AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = o.campaign_id
                      AND r.contact_id = o.contact_id AND r.arm = 'control')
    GROUP BY k.phone_e164, c.id, c.sent_at
), latest AS (
    SELECT phone, campaign_id, delivered,
           row_number() OVER (PARTITION BY phone ORDER BY sent_at DESC, campaign_id DESC) AS n
    FROM sends
)
SELECT phone,
       '{SOURCE_PREFIX}' || CAST(max(CASE WHEN n = 3 THEN campaign_id END) AS TEXT) || ', '
       || CAST(max(CASE WHEN n = 2 THEN campaign_id END) AS TEXT) || ', '
       || CAST(max(CASE WHEN n = 1 THEN campaign_id END) AS TEXT) AS source
FROM latest
WHERE n <= {CAMPAIGNS}
GROUP BY phone
HAVING count(*) = {CAMPAIGNS} AND max(delivered) = 0
"""
"""The numbers bouncing now, with the ids of their last three campaigns."""


@dataclass(frozen=True)
class BounceReport:
    added: int
    lifted: int
    in_force: int


def update_hard_bounces(database: Database, now: datetime | None = None) -> BounceReport:
    """Add the numbers bouncing now, lift this module's rows of numbers that no longer are
    (delivered again), in one transaction."""
    now = datetime.now(UTC) if now is None else now
    values = {"now": database.bind_timestamp(now)}
    postgres = database.dialect == "postgresql"
    with database.engine.begin() as connection:
        if not postgres:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{STAGING}")
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE {STAGING} (phone_e164 TEXT PRIMARY KEY, source TEXT NOT NULL)"
            + (" ON COMMIT DROP" if postgres else "")
        )
        connection.execute(sa.text(f"INSERT INTO {STAGING} (phone_e164, source) {BOUNCING}"))

        def run(sql: str) -> int:
            return connection.execute(sa.text(sql), values).rowcount

        lifted = run(
            "DELETE FROM suppressions WHERE reason = 'hard_bounce' "
            f"AND source LIKE '{SOURCE_PREFIX}%' AND NOT EXISTS "
            f"(SELECT 1 FROM {STAGING} b WHERE b.phone_e164 = suppressions.phone_e164)"
        )
        renewed = run(
            f"UPDATE suppressions SET source = (SELECT b.source FROM {STAGING} b "
            "WHERE b.phone_e164 = suppressions.phone_e164), recorded_at = :now, "
            "expires_at = NULL WHERE reason = 'hard_bounce' AND expires_at <= :now AND EXISTS "
            f"(SELECT 1 FROM {STAGING} b WHERE b.phone_e164 = suppressions.phone_e164)"
        )
        inserted = run(
            "INSERT INTO suppressions (phone_e164, reason, source, recorded_at) "
            f"SELECT b.phone_e164, 'hard_bounce', b.source, :now FROM {STAGING} b "
            "WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.phone_e164 = b.phone_e164 "
            "AND x.reason = 'hard_bounce')"
        )
        in_force = connection.execute(
            sa.text(
                "SELECT count(*) FROM suppressions WHERE reason = 'hard_bounce' "
                "AND (expires_at IS NULL OR expires_at > :now)"
            ),
            values,
        ).scalar_one()
        if not postgres:
            connection.exec_driver_sql(f"DROP TABLE temp.{STAGING}")
    return BounceReport(added=renewed + inserted, lifted=lifted, in_force=int(in_force))
