"""The reply texts that opt a number out of (or back into) SMS campaigns.

A reply is compared after folding: accents removed, upper case, punctuation and repeated
spaces dropped, so ``"baja."``, ``"Bája"`` and ``"  NO   más!"`` read ``BAJA`` and ``NO MAS``.
Only a reply that *is* a keyword counts; a sentence that contains one ("no me des de baja")
does not, since nobody can tell what it asks for.
"""

import re
import unicodedata

OPT_OUT_KEYWORDS = frozenset(
    {
        "BAJA",
        "ALTO",
        "STOP",
        "CANCELAR",
        "NO MAS",
        "DETENER",
        "UNSUBSCRIBE",
        "SALIR",
    }
)
"""A reply that is one of these opts the number out (``opt_out`` suppression)."""
OPT_IN_KEYWORDS = frozenset({"ALTA", "START"})
"""A reply that is one of these, received after the opt-out, lifts it."""
OPT_OUT = "opt_out"
OPT_IN = "opt_in"
_NOT_WORD = re.compile(r"[^A-Z0-9 ]+")
_SPACES = re.compile(r"\s+")


def fold(body: str) -> str:
    """The reply's text without accents, case, punctuation or repeated spaces."""
    decomposed = unicodedata.normalize("NFKD", body)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", plain)).strip()


def classify_reply(body: str | None) -> str | None:
    """``"opt_out"``, ``"opt_in"``, or None for a reply that is neither."""
    if body is None:
        return None
    text = fold(body)
    if text in OPT_OUT_KEYWORDS:
        return OPT_OUT
    if text in OPT_IN_KEYWORDS:
        return OPT_IN
    return None
