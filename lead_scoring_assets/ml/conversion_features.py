"""Conversion features (``conversion_v1``) and the point-in-time training set.

A training row is one delivered message; its features are computed with the scoring engine
**as of the campaign's** ``sent_at`` (validation rows dated later take no part, SCORING_SPEC.md
§2 v1.1), never as of today, so a model never sees what happened after the message. Its label
is a conversion within ``attribution_days`` of ``sent_at``. The contact is taken as it was at
``sent_at`` (``ml/point_in_time.py``: its recorded changes, a contact deleted since included,
one created later left out), unless the campaign's feature log holds the features it was
selected with: those are used as logged. A control recipient is never a training row.

Features: ``features_v1`` plus the profile's categorical fields: the state normalised, the
carrier, and whether the LADA is in the reference (one-hot encoded by the model's pipeline).
Outcome rows with an unknown campaign or contact, no ``delivered`` value, or a conversion
without delivery take no part: ``rejected_campaign_outcomes`` lists them with their reason.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from lead_scoring_assets.db.database import FIRST_ID, Database
from lead_scoring_assets.db.tables import SCORING_VALIDATION_COLUMNS
from lead_scoring_assets.geography.states import normalize_state, normalize_state_series
from lead_scoring_assets.ml.features import FEATURE_COLUMNS, contact_features
from lead_scoring_assets.ml.point_in_time import contacts_at_sql, training_set_sha256
from lead_scoring_assets.scoring.breakdown import saturation_days
from lead_scoring_assets.scoring.config import DEFAULT_CONFIG, PROFILE_FIELDS
from lead_scoring_assets.scoring.engine import LadaReference, score_chunk, utc_timestamp
from lead_scoring_assets.scoring.full_rescore import read_lada_reference

CONVERSION_FEATURE_SET = "conversion_v1"
CATEGORICAL_COLUMNS = ("state", "carrier", "lada_status")
REASON_FEATURES = (*FEATURE_COLUMNS, *CATEGORICAL_COLUMNS)
"""The model's input features; a reason groups them by concept (``REASON_CONCEPTS``)."""
FEATURE_DTYPES = {
    **{c: "int8" for c in FEATURE_COLUMNS if c.startswith(("has_", "is_")) or c.endswith("_user")},
    **{c: "int16" for c in FEATURE_COLUMNS if c.endswith(("_score", "_count"))},
    **dict.fromkeys(
        ("avg_confidence_score", "profile_completeness", "geographic_consistency"), "float64"
    ),
    **dict.fromkeys(("account_age_days", "validation_recency_days"), "int32"),
}
"""The dtypes of the numeric features as ``ml/features.py`` computes them."""
HASHED_COLUMNS = ("campaign_id", "contact_id", "converted", "total_score", *REASON_FEATURES)
"""What ``training_set_sha256`` covers: the rows' keys, label, rule score and features."""
UNKNOWN = "UNKNOWN"
DEFAULT_ATTRIBUTION_DAYS = 30
REJECTION_REASONS = (
    "unknown_campaign",
    "unknown_contact",
    "missing_delivered",
    "converted_without_delivery",
)


def conversion_features(parts, contacts: pd.DataFrame, ladas: LadaReference) -> pd.DataFrame:
    """``contact_id``, ``features_v1`` and the categorical columns, in ``parts`` order (the
    scorer's: ascending id); ``contacts`` are the rows the parts were computed from."""
    frame = contact_features(parts)
    profile = contacts.set_index("id").loc[parts.contact_ids]
    state = normalize_state_series(profile["state_name"].astype("str"))
    frame["state"] = state.fillna(UNKNOWN).to_numpy(dtype=object)
    carrier = profile["operator"].astype("str").str.strip().str.upper()
    frame["carrier"] = carrier.where(carrier.str.len() > 0).fillna(UNKNOWN).to_numpy(dtype=object)
    lada = profile["lada"].astype("str").str.strip()
    frame["lada_status"] = np.where(
        lada.isna() | (lada == ""), "missing", np.where(lada.isin(ladas.ladas), "known", "unknown")
    )
    return frame


@dataclass
class TrainingSet:
    """One row per delivered message: ``campaign_id``, ``contact_id``, ``sent_at``,
    ``converted`` (the label), the rule's ``total_score`` at ``sent_at`` and the features."""

    rows: pd.DataFrame
    campaigns: pd.DataFrame
    """Per campaign in the set: ``id``, ``name``, ``sent_at``, ``messages``, ``conversions``."""
    open_campaigns: list[int] = field(default_factory=list)
    """Campaigns left out: their attribution window had not closed at ``as_of``."""
    rejected: dict[str, int] = field(default_factory=dict)
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS
    as_of: pd.Timestamp | None = None
    seconds: float = 0.0

    @cached_property
    def sha256(self) -> str:
        """``training_set_sha256`` of the rows' ``HASHED_COLUMNS``."""
        return training_set_sha256(self.rows, HASHED_COLUMNS)

    @property
    def messages(self) -> int:
        return len(self.rows)

    @property
    def conversions(self) -> int:
        return int(self.rows["converted"].sum()) if len(self.rows) else 0


def rejected_outcomes(database: Database) -> dict[str, int]:
    """Outcome rows that take no part, counted by reason (``rejected_campaign_outcomes``)."""
    counts = database.read_frame(
        "SELECT reason, count(*) AS n FROM rejected_campaign_outcomes GROUP BY reason"
    )
    return {str(r): int(n) for r, n in zip(counts["reason"], counts["n"])}


MESSAGES = (
    "o.campaign_id = :campaign AND o.delivered = :yes AND NOT EXISTS (SELECT 1 FROM "
    "campaign_recipients r WHERE r.campaign_id = o.campaign_id "
    "AND r.contact_id = o.contact_id AND r.arm = 'control')"
)
"""A campaign's messages: delivered outcomes, never a control recipient's."""
IS_MESSAGE = (
    f"EXISTS (SELECT 1 FROM campaign_outcomes o WHERE o.contact_id = {{id}} AND {MESSAGES})"
)


def campaign_chunks(
    database: Database,
    campaign_id: int,
    sent_at: pd.Timestamp,
    chunk_size: int,
    rows_sql: str | None = None,
    selected: str = IS_MESSAGE,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """(rows, contacts, validations, logged) of a campaign's selected contacts, ``chunk_size``
    at a time by contact id: ``rows_sql``'s rows (``contact_id``, ``converted``,
    ``converted_at``, any more columns; default: the campaign's messages), the contacts as
    they were at ``sent_at`` (``point_in_time``), their validation rows, and their logged
    features with the recipient's ``total_score``. ``selected`` is the condition on ``{id}``
    that ``rows_sql``'s contacts meet."""
    rows_sql = rows_sql or (
        "SELECT o.contact_id, o.converted, o.converted_at FROM campaign_outcomes o "
        f"WHERE {MESSAGES} AND o.contact_id > :after ORDER BY o.contact_id LIMIT :limit"
    )
    after = FIRST_ID
    while True:
        outcomes = database.read_frame(
            rows_sql, {"campaign": campaign_id, "yes": True, "after": after, "limit": chunk_size}
        )
        if outcomes.empty:
            return
        upto = int(outcomes["contact_id"].iloc[-1])
        window = {"campaign": campaign_id, "yes": True, "after": after, "upto": upto}
        contacts = database.read_frame(
            contacts_at_sql(selected), {**window, "at": database.bind_timestamp(sent_at)}
        )
        validations = database.read_frame(
            f"SELECT {', '.join(f'v.{c}' for c in SCORING_VALIDATION_COLUMNS)} "
            "FROM platform_validations v WHERE v.contact_id > :after AND v.contact_id <= :upto "
            f"AND {selected.format(id='v.contact_id')}",
            window,
        )
        logged = database.read_frame(
            f"SELECT f.contact_id, r.total_score, {', '.join(f'f.{c}' for c in REASON_FEATURES)} "
            "FROM campaign_recipient_features f LEFT JOIN campaign_recipients r "
            "ON r.campaign_id = f.campaign_id AND r.contact_id = f.contact_id "
            "WHERE f.campaign_id = :campaign AND f.feature_set = :feature_set "
            "AND f.contact_id > :after AND f.contact_id <= :upto "
            f"AND {selected.format(id='f.contact_id')}",
            {**window, "feature_set": CONVERSION_FEATURE_SET},
        )
        yield outcomes, contacts, validations, logged
        after = upto


def features_at(
    sent_at: pd.Timestamp,
    contacts: pd.DataFrame,
    validations: pd.DataFrame,
    logged: pd.DataFrame,
    ladas: LadaReference,
) -> pd.DataFrame:
    """``contact_id``, ``total_score`` and the features at ``sent_at``, by contact id: the
    logged ones where a complete feature log exists (its ``total_score`` the recipient's, else
    the rule's at ``sent_at``), else computed from ``contacts`` as they were then (a contact
    created after ``sent_at`` has none)."""
    created = pd.to_datetime(contacts["created_at"], utc=True, format="ISO8601")
    contacts = contacts[(created.isna() | (created <= sent_at)).to_numpy()]
    scored = score_chunk(contacts, validations, ladas, sent_at, DEFAULT_CONFIG)
    computed = conversion_features(scored.parts, contacts, ladas)
    computed.insert(1, "total_score", scored.scores["total_score"].to_numpy())
    logged = logged.dropna(subset=list(REASON_FEATURES))
    rule = logged["contact_id"].map(computed.set_index("contact_id")["total_score"])
    logged = logged.assign(total_score=logged["total_score"].fillna(rule)).dropna(
        subset=["total_score"]
    )
    logged = logged[computed.columns].astype(
        {
            "contact_id": "int64",
            "total_score": computed["total_score"].dtype,
            **FEATURE_DTYPES,
            **dict.fromkeys(CATEGORICAL_COLUMNS, object),
        }
    )
    kept = computed[~computed["contact_id"].isin(logged["contact_id"])]
    return pd.concat([kept, logged], ignore_index=True).sort_values("contact_id", ignore_index=True)


def label(outcomes: pd.DataFrame, sent_at: pd.Timestamp, attribution_days: int) -> np.ndarray:
    """Converted within ``attribution_days`` of ``sent_at`` (a conversion without a time
    counts: the platform recorded it for this campaign)."""
    converted = outcomes["converted"].astype("boolean").fillna(False).to_numpy(bool)
    at = pd.to_datetime(outcomes["converted_at"], utc=True, format="ISO8601")
    in_window = (at >= sent_at) & (at <= sent_at + pd.Timedelta(days=attribution_days))
    return converted & (at.isna() | in_window).to_numpy(bool)


def labelled_rows(
    database: Database,
    campaign,
    ladas: LadaReference,
    attribution_days: int,
    chunk_size: int,
    rows_sql: str | None = None,
    selected: str = IS_MESSAGE,
) -> Iterator[pd.DataFrame]:
    """``campaign_chunks``' rows of ``campaign`` (``id``, ``sent_at``) with their features at
    ``sent_at`` and label: ``campaign_id``, ``contact_id``, ``sent_at``, ``converted``, the
    rows' other columns, ``total_score`` and the features (a contact created later has none)."""
    for outcomes, contacts, validations, logged in campaign_chunks(
        database, campaign.id, campaign.sent_at, chunk_size, rows_sql, selected
    ):
        features = features_at(campaign.sent_at, contacts, validations, logged, ladas)
        features = outcomes.merge(features, on="contact_id")
        converted = label(features, campaign.sent_at, attribution_days)
        features = features.drop(columns=["converted", "converted_at"])
        features.insert(0, "campaign_id", np.int64(campaign.id))
        features.insert(2, "sent_at", campaign.sent_at)
        features.insert(3, "converted", converted)
        yield features


def build_training_set(
    database: Database,
    attribution_days: int = DEFAULT_ATTRIBUTION_DAYS,
    as_of=None,
    chunk_size: int = 100_000,
) -> TrainingSet:
    """Every delivered message of the campaigns whose attribution window closed by ``as_of``
    (default now), with its point-in-time features and label."""
    started = time.perf_counter()
    as_of = utc_timestamp(as_of if as_of is not None else pd.Timestamp.now(tz="UTC"))
    ladas = read_lada_reference(database)
    campaigns = database.read_frame("SELECT id, name, sent_at FROM campaigns ORDER BY sent_at, id")
    campaigns["sent_at"] = pd.to_datetime(campaigns["sent_at"], utc=True, format="ISO8601")
    closed = campaigns["sent_at"] + pd.Timedelta(days=attribution_days) <= as_of
    frames, summary = [], []
    for campaign in campaigns[closed].itertuples():
        messages = conversions = 0
        for features in labelled_rows(database, campaign, ladas, attribution_days, chunk_size):
            frames.append(features)
            messages += len(features)
            conversions += int(features["converted"].sum())
        summary.append(
            {
                "id": campaign.id,
                "name": campaign.name,
                "sent_at": campaign.sent_at,
                "messages": messages,
                "conversions": conversions,
            }
        )
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=[
                "campaign_id",
                "contact_id",
                "sent_at",
                "converted",
                "total_score",
                *REASON_FEATURES,
            ]
        )
    )
    return TrainingSet(
        rows=rows,
        campaigns=pd.DataFrame(
            summary, columns=["id", "name", "sent_at", "messages", "conversions"]
        ),
        open_campaigns=[int(i) for i in campaigns.loc[~closed, "id"]],
        rejected=rejected_outcomes(database),
        attribution_days=attribution_days,
        as_of=as_of,
        seconds=time.perf_counter() - started,
    )


PLATFORM_NAMES = {
    "whatsapp": "WhatsApp",
    "instagram": "Instagram",
    "facebook": "Facebook",
    "google": "Google",
    "apple": "Apple",
}
REASON_CONCEPTS = {
    **{p: (f"has_{p}", f"{p}_score") for p in PLATFORM_NAMES},
    "platforms": (
        "platform_count",
        "is_multi_platform",
        "validation_count",
        "avg_confidence_score",
        "meta_ecosystem_user",
        "tech_ecosystem_user",
    ),
    "business": ("business_account_count", "has_business_accounts"),
    "premium": ("premium_account_count", "has_premium_accounts"),
    "recency": ("validation_recency_days",),
    "region": ("state", "geographic_consistency", "lada_status"),
    "carrier": ("carrier",),
    "profile": ("profile_completeness", "account_age_days"),
}
"""The concepts a reason names, each the sum of its features' contributions: every feature of
``REASON_FEATURES`` belongs to exactly one."""
CONCEPTS = tuple(REASON_CONCEPTS)
REST = "rest"
REST_CODE = 100
"""A reason's code in ``conversion_scores``: ``REST_CODE`` for the rest (every concept not
shown), ``REST_CODE + 1 + i`` for ``CONCEPTS[i]``. Codes below 100 are the per-feature codes
of earlier scoring runs: such a row has no reasons until the next run rewrites it."""
PLAIN_WORDS = {
    **{p: {"en": name, "es": name} for p, name in PLATFORM_NAMES.items()},
    "platforms": {"en": "how many platforms", "es": "cuántas plataformas"},
    "business": {"en": "business accounts", "es": "cuentas de negocio"},
    "premium": {"en": "premium accounts", "es": "cuentas premium"},
    "recency": {"en": "how recent", "es": "qué tan reciente"},
    "region": {"en": "region", "es": "región"},
    "carrier": {"en": "carrier", "es": "operador"},
    "profile": {"en": "profile", "es": "perfil"},
    REST: {"en": "everything else", "es": "todo lo demás"},
}
"""Each concept's name, for a reason without the contact's facts."""
FACT_COLUMNS = {
    "lead_scores": (
        *(f"{p}_score" for p in PLATFORM_NAMES),
        "platform_count",
        "business_account_count",
        "premium_account_count",
        "validation_recency_days",
        "profile_fields",
        "lada_state_match",
    ),
    "contacts": ("state_name", "operator"),
}
"""The columns a reason's words are taken from."""


def reason_code(concept: str) -> int:
    return REST_CODE if concept == REST else REST_CODE + 1 + CONCEPTS.index(concept)


def reason_name(code: int) -> str:
    """The concept a reason code stands for (``REST`` for the rest); ``LookupError`` for a
    code of an earlier run."""
    code = int(code)
    if code == REST_CODE:
        return REST
    if REST_CODE < code <= REST_CODE + len(CONCEPTS):
        return CONCEPTS[code - REST_CODE - 1]
    raise LookupError(f"reason code {code} is not a concept's")


def _text(value) -> str:
    return "" if value is None or pd.isna(value) else str(value).strip()


def _count(n: int, one: str, many: str, none: str) -> str:
    return none if n == 0 else (one if n == 1 else many.format(n=n))


def _fact_words(concept: str, facts: dict) -> dict[str, str]:
    """The contact's fact behind ``concept`` in Spanish and English, from its ``lead_scores``
    row and profile (``state_name``, ``operator``)."""
    if concept in PLATFORM_NAMES:
        name, score = PLATFORM_NAMES[concept], int(facts[f"{concept}_score"])
        if score <= 0:
            return {"es": f"Sin {name} validado", "en": f"Not validated on {name}"}
        weight = DEFAULT_CONFIG.display_weights[concept]
        return {
            "es": f"{name} validado ({score}/{weight})",
            "en": f"Validated on {name} ({score}/{weight})",
        }
    if concept == "platforms":
        n, of = int(facts["platform_count"]), len(PLATFORM_NAMES)
        return {
            "es": f"Activo en {n} de {of} plataformas",
            "en": f"Active on {n} of {of} platforms",
        }
    if concept in ("business", "premium"):
        n = int(facts[f"{concept}_account_count"])
        es, en = ("de negocio", "business") if concept == "business" else ("premium", "premium")
        return {
            "es": _count(
                n, f"Tiene 1 cuenta {es}", f"Tiene {{n}} cuentas {es}", f"Sin cuentas {es}"
            ),
            "en": _count(n, f"Has 1 {en} account", f"Has {{n}} {en} accounts", f"No {en} account"),
        }
    if concept == "recency":
        days = facts.get("validation_recency_days")
        if days is None or pd.isna(days):
            return {"es": "Nunca validado", "en": "Never validated"}
        days, cap = int(days), saturation_days(DEFAULT_CONFIG)[1]
        if days >= cap:
            return {
                "es": f"Validado hace {cap} días o más",
                "en": f"Validated {cap} days ago or more",
            }
        return {
            "es": _count(days, "Validado hace 1 día", "Validado hace {n} días", "Validado hoy"),
            "en": _count(days, "Validated 1 day ago", "Validated {n} days ago", "Validated today"),
        }
    if concept == "region":
        state = normalize_state(_text(facts.get("state_name")))
        words = (
            {"es": f"Región: {state}", "en": f"Region: {state}"}
            if state
            else {"es": "Región desconocida", "en": "Unknown region"}
        )
        if facts.get("lada_state_match") == 0:
            words = {
                "es": words["es"] + " (LADA de otro estado)",
                "en": words["en"] + " (LADA of another state)",
            }
        return words
    if concept == "carrier":
        carrier = _text(facts.get("operator")).upper()
        return (
            {"es": f"Operador: {carrier}", "en": f"Carrier: {carrier}"}
            if carrier
            else {"es": "Operador desconocido", "en": "Unknown carrier"}
        )
    if concept == "profile":
        n, of = int(facts.get("profile_fields") or 0), len(PROFILE_FIELDS)
        return {"es": f"Perfil con {n} de {of} datos", "en": f"Profile with {n} of {of} fields"}
    return PLAIN_WORDS[concept]


def decoded_reasons(row: dict, facts: dict | None = None) -> dict:
    """The reason columns of a ``conversion_scores`` row: ``{"raises": [...], "lowers":
    [...], "rest": {...}}``, each reason ``{"feature", "words", "text", "effect"}`` (log-odds
    against the average contact; ``feature`` the concept, ``text`` its words in ``es`` and
    ``en``: the contact's fact from ``facts``, its ``lead_scores`` row and profile, else the
    concept's name; ``words`` the English). Shown effects and the rest add up to the contact's
    log-odds minus the average contact's; ``average_probability`` is that contact's. Empty for
    the fallback and for a row of an earlier run."""
    reasons: dict = {"raises": [], "lowers": [], "rest": None}
    found = []
    for side in ("up", "down"):
        for i in (1, 2, 3):
            code = row.get(f"{side}_feature_{i}")
            if code is not None and not pd.isna(code):
                found.append((int(code), float(row[f"{side}_effect_{i}"])))
    if not found or any(code < REST_CODE for code, _ in found):
        return reasons
    for code, effect in found:
        concept = reason_name(code)
        text = (
            PLAIN_WORDS[concept]
            if facts is None or concept == REST
            else _fact_words(concept, facts)
        )
        reason = {"feature": concept, "words": text["en"], "text": text, "effect": round(effect, 4)}
        if concept == REST:
            reasons["rest"] = reason
        else:
            reasons["raises" if effect > 0 else "lowers"].append(reason)
    probability = row.get("conversion_probability")
    if probability is not None and not pd.isna(probability) and 0 < probability < 1:
        logit = np.log(probability / (1 - probability)) - sum(e for _, e in found)
        reasons["average_probability"] = round(float(1 / (1 + np.exp(-logit))), 6)
    return reasons
