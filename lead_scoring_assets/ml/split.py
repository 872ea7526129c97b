"""A stable training/holdout split and a reproducible sample, both by a hash of the contact id.

The hash keeps every intermediate value below 2^63, so it never overflows a ``bigint`` for
any 64-bit id (negative ones included), and it is the same number in SQLite, PostgreSQL and
numpy: ``id mod P`` taken non-negative (SQL's ``%`` keeps the sign of the id, numpy's does
not, hence ``((id % P) + P) % P``), an affine step with a salt, then a squaring step so that
consecutive ids do not fall into regularly spaced buckets.

A contact's side depends only on its id and ``HOLDOUT_SALT``: adding, removing or rescoring
other contacts never moves it between training and holdout.
"""

import numpy as np

PRIME = 2_147_483_647
"""2^31 − 1: every product below stays under 2^62."""
MULTIPLIER = 48_271
HOLDOUT_SALT = 1_234_567_891
"""Fixed: changing it reshuffles the holdout, so past champions would have trained on it."""
HOLDOUT_PERCENT = 20


def salt_of(seed: int) -> int:
    """A salt in [0, PRIME) for a sample seed, distinct from ``HOLDOUT_SALT`` for small seeds."""
    return (seed * 2_654_435_761 + 97) % PRIME


def stable_hash(ids: np.ndarray, salt: int) -> np.ndarray:
    """The hash of each int64 id, in [0, PRIME)."""
    x = np.asarray(ids, dtype=np.int64) % PRIME
    mixed = (x * MULTIPLIER + salt) % PRIME
    return (mixed * mixed + x) % PRIME


def stable_hash_sql(column: str, salt: int) -> str:
    """The same hash as a SQL expression over an integer ``column``, identical on SQLite and
    PostgreSQL (``column`` and ``salt`` come from this code, never from input)."""
    x = f"((({column} % {PRIME}) + {PRIME}) % {PRIME})"
    mixed = f"(({x} * {MULTIPLIER} + {int(salt)}) % {PRIME})"
    return f"(({mixed} * {mixed} + {x}) % {PRIME})"


def in_holdout(ids: np.ndarray) -> np.ndarray:
    """True for the contacts of the holdout (about ``HOLDOUT_PERCENT`` % of all contacts)."""
    return stable_hash(ids, HOLDOUT_SALT) % 100 < HOLDOUT_PERCENT
