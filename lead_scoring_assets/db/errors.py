"""Errors described without personal data: what logs, queue tables and run events may keep.

Database errors carry the rows they failed on: SQLAlchemy appends the statement's parameters,
PostgreSQL adds ``DETAIL: Failing row contains (…)``, a trigger may raise with the row in its
message. ``describe_error`` keeps the error class, the SQLSTATE and the first line of the
message with its literals masked; ``DatabaseError`` is what the Dagster layer raises instead.
"""

import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import adbc_driver_manager
import psycopg
import sqlalchemy.exc

MESSAGE_CHARS = 160
TRANSIENT_ERRORS = (
    sqlalchemy.exc.OperationalError,
    psycopg.OperationalError,
    adbc_driver_manager.OperationalError,
)
"""Lost connections, timeouts, server restarts: worth a retry."""
LOCK_NOT_AVAILABLE = "55P03"
INSUFFICIENT_PRIVILEGE = "42501"
"""The SQLSTATE of a lock request that ran out of ``lock_timeout`` (PostgreSQL)."""
DRIVER_ERRORS = (
    sqlalchemy.exc.SQLAlchemyError,
    psycopg.Error,
    adbc_driver_manager.Error,
    sqlite3.Error,
)
_LITERALS = (
    (re.compile(r"'(?:[^']|'')*'?"), "'…'"),
    (re.compile(r'"(?:[^"]|"")*"?'), '"…"'),
    (re.compile(r"\((?:[^()]|\([^()]*\))*\)?"), "(…)"),
    (re.compile(r"\+?\d[\d .()/-]{3,}\d"), "#"),
)
"""Quoted text, parenthesised rows and numbers of five digits or more: where values hide."""


def lock_not_available(error: BaseException) -> bool:
    """Whether ``error`` is a lock request that ran out of ``lock_timeout``."""
    original = getattr(error, "orig", error)
    return getattr(original, "sqlstate", None) == LOCK_NOT_AVAILABLE


def insufficient_privilege(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL refusing the role a statement (permission denied)."""
    original = getattr(error, "orig", error)
    return getattr(original, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


class DatabaseError(Exception):
    """A database error described without its parameters or rows."""


class TransientDatabaseError(DatabaseError):
    """A described ``TRANSIENT_ERRORS`` error: a retry may succeed."""


def _driver_error(error: BaseException) -> BaseException:
    """The DB-API error under SQLAlchemy's wrapper, if any."""
    original = getattr(error, "orig", None)
    return original if isinstance(original, BaseException) else error


def _sqlstate(error: BaseException) -> str | None:
    return getattr(error, "sqlstate", None) or getattr(error, "sqlite_errorname", None) or None


def _first_line(error: BaseException) -> str:
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or (str(error.args[0]) if error.args else "")
    for marker in ("\n", "DETAIL:", "[SQL:", "[parameters:"):
        text = text.split(marker, 1)[0]
    return text.strip()


def describe_error(error: BaseException) -> str:
    """``Class [SQLSTATE]: message``, the message cut to its first line with quoted text,
    parenthesised rows and long numbers masked, at most ``MESSAGE_CHARS`` characters."""
    original = _driver_error(error)
    message = _first_line(original)
    for pattern, mask in _LITERALS:
        message = pattern.sub(mask, message)
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    diag = getattr(original, "diag", None)
    names = [
        f"{kind} {getattr(diag, f'{kind}_name', None)}"
        for kind in ("table", "column", "constraint")
        if getattr(diag, f"{kind}_name", None)
    ]
    if names:
        message += f" ({', '.join(names)})"
    state = _sqlstate(original)
    name = type(error).__name__
    return f"{name} [{state}]: {message}" if state else f"{name}: {message}"


def sanitized(error: BaseException) -> DatabaseError:
    """The ``DatabaseError`` (transient or not) to raise in place of ``error``, with its
    traceback (code locations, no values)."""
    kind = TransientDatabaseError if isinstance(error, TRANSIENT_ERRORS) else DatabaseError
    return kind(describe_error(error)).with_traceback(error.__traceback__)


@contextmanager
def database_errors_sanitized() -> Iterator[None]:
    """Re-raise any driver or SQLAlchemy error as a ``DatabaseError`` without its message's
    values, its parameters or the original exception chained to it."""
    try:
        yield
    except DRIVER_ERRORS as error:
        raise sanitized(error) from None
