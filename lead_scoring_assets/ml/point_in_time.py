"""Contacts as they were at a moment, from ``contact_changes`` (migration ``0016``), and the
SHA-256 that identifies a training set.

A contact's state at ``t`` is the old values of its earliest change recorded after ``t`` (an
``update`` or its ``delete``), else its current ``contacts`` row; neither means it did not
exist at ``t`` (or was deleted before), or was deleted before ``0016`` recorded changes.
"""

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lead_scoring_assets.scoring.config import PROFILE_FIELDS

STATE_COLUMNS = ("id", *PROFILE_FIELDS, "created_at")
"""What the scorer reads of a contact (never its phone number), as ``contact_changes`` keeps it."""
SORT_KEY = ["campaign_id", "contact_id"]


def contacts_at_sql(selected: str) -> str:
    """A query of the contacts with id in ``(:after, :upto]`` meeting ``selected`` (a condition
    on ``{id}``) as they were at ``:at``."""
    values = ", ".join(STATE_COLUMNS[1:])
    changed = ", ".join(f"h.{c}" for c in STATE_COLUMNS[1:])
    return (
        f"SELECT h.contact_id AS id, {changed} FROM contact_changes h WHERE h.id IN ("
        "SELECT min(x.id) FROM contact_changes x WHERE x.contact_id > :after "
        f"AND x.contact_id <= :upto AND x.changed_at > :at AND {selected.format(id='x.contact_id')} "
        "GROUP BY x.contact_id) "
        f"UNION ALL SELECT id, {values} FROM contacts c WHERE c.id > :after AND c.id <= :upto "
        f"AND {selected.format(id='c.id')} AND NOT EXISTS (SELECT 1 FROM contact_changes x "
        "WHERE x.contact_id = c.id AND x.changed_at > :at)"
    )


def training_set_sha256(rows: pd.DataFrame, columns: Sequence[str]) -> str:
    """SHA-256 of ``rows``' ``columns`` sorted by ``(campaign_id, contact_id)``: each column's
    name, then its values: integers and booleans as little-endian int64, floats as
    little-endian float64 (one NaN), text as UTF-8, each value preceded by its length."""
    ordered = rows.sort_values(SORT_KEY, kind="stable")
    digest = hashlib.sha256()
    for name in columns:
        column = ordered[name]
        digest.update(name.encode() + b"\0")
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
            digest.update(column.to_numpy(dtype="<i8").tobytes())
        elif pd.api.types.is_float_dtype(column):
            values = column.to_numpy(dtype="<f8")
            digest.update(np.where(np.isnan(values), np.nan, values).astype("<f8").tobytes())
        else:
            if isinstance(column.dtype, pd.CategoricalDtype):
                # hashed as the same text in an object column
                column = column.astype(object).where(column.notna(), None)
            encoded = [str(value).encode() for value in column]
            digest.update(np.array([len(e) for e in encoded], dtype="<i8").tobytes())
            digest.update(b"".join(encoded))
    return digest.hexdigest()
