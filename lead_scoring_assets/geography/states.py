"""Normalisation of Mexican state names to the canonical names of the 32 federal entities."""

import re
import unicodedata

import pandas as pd

CANONICAL_STATES: tuple[str, ...] = (
    "AGUASCALIENTES",
    "BAJA CALIFORNIA",
    "BAJA CALIFORNIA SUR",
    "CAMPECHE",
    "CHIAPAS",
    "CHIHUAHUA",
    "CIUDAD DE MEXICO",
    "COAHUILA",
    "COLIMA",
    "DURANGO",
    "GUANAJUATO",
    "GUERRERO",
    "HIDALGO",
    "JALISCO",
    "MEXICO",
    "MICHOACAN",
    "MORELOS",
    "NAYARIT",
    "NUEVO LEON",
    "OAXACA",
    "PUEBLA",
    "QUERETARO",
    "QUINTANA ROO",
    "SAN LUIS POTOSI",
    "SINALOA",
    "SONORA",
    "TABASCO",
    "TAMAULIPAS",
    "TLAXCALA",
    "VERACRUZ",
    "YUCATAN",
    "ZACATECAS",
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "AGUASCALIENTES": ("AGS", "AGU"),
    "BAJA CALIFORNIA": ("BC", "BCN", "BAJA CALIFORNIA NORTE"),
    "BAJA CALIFORNIA SUR": ("BCS",),
    "CAMPECHE": ("CAMP", "CAM"),
    "CHIAPAS": ("CHIS", "CHP"),
    "CHIHUAHUA": ("CHIH", "CHH"),
    "CIUDAD DE MEXICO": (
        "CDMX",
        "CD MX",
        "CD DE MEXICO",
        "DISTRITO FEDERAL",
        "DF",
        "MEXICO DF",
        "MEXICO CITY",
        "CMX",
    ),
    "COAHUILA": ("COAHUILA DE ZARAGOZA", "COAH", "COA"),
    "COLIMA": ("COL",),
    "DURANGO": ("DGO", "DUR"),
    "GUANAJUATO": ("GTO", "GUA"),
    "GUERRERO": ("GRO",),
    "HIDALGO": ("HGO", "HID"),
    "JALISCO": ("JAL",),
    "MEXICO": (
        "ESTADO DE MEXICO",
        "EDO DE MEXICO",
        "EDO MEX",
        "EDOMEX",
        "EDO MEXICO",
        "MEX",
        "EM",
        "MEXICO STATE",
        "STATE OF MEXICO",
    ),
    "MICHOACAN": ("MICHOACAN DE OCAMPO", "MICH", "MIC"),
    "MORELOS": ("MOR",),
    "NAYARIT": ("NAY",),
    "NUEVO LEON": ("NL", "NLE", "N L"),
    "OAXACA": ("OAX",),
    "PUEBLA": ("PUE",),
    "QUERETARO": ("QUERETARO DE ARTEAGA", "QRO", "QUE"),
    "QUINTANA ROO": ("QROO", "Q ROO", "QR", "ROO"),
    "SAN LUIS POTOSI": ("SLP",),
    "SINALOA": ("SIN",),
    "SONORA": ("SON",),
    "TABASCO": ("TAB",),
    "TAMAULIPAS": ("TAMPS", "TAMP", "TAM"),
    "TLAXCALA": ("TLAX", "TLA"),
    "VERACRUZ": ("VERACRUZ DE IGNACIO DE LA LLAVE", "VER", "VERACRUZ LLAVE"),
    "YUCATAN": ("YUC",),
    "ZACATECAS": ("ZAC",),
}

_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[.,;]")


def _clean(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.upper())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WHITESPACE.sub(" ", stripped).strip()


def _alias_key(cleaned: str) -> str:
    """Alias look-up key: punctuation read as a space, so 'EDO. MEX.' matches 'EDO MEX'."""
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub(" ", cleaned)).strip()


_ALIAS_TO_CANONICAL: dict[str, str] = {
    _alias_key(_clean(alias)): canonical
    for canonical, aliases in _ALIASES.items()
    for alias in (canonical, *aliases)
}


def normalize_state(name: str | None) -> str | None:
    """Canonical state name (e.g. 'Edo. Méx.' -> 'MEXICO'); None for a blank name.

    Upper-case, accents stripped, white space trimmed and collapsed, then aliases of the
    32 federal entities mapped to their canonical name. A name that is no known alias is
    returned cleaned but otherwise unchanged.
    """
    if name is None or (isinstance(name, float) and pd.isna(name)):
        return None
    cleaned = _clean(str(name))
    if not cleaned:
        return None
    return _ALIAS_TO_CANONICAL.get(_alias_key(cleaned), cleaned)


def normalize_state_series(names: pd.Series) -> pd.Series:
    """Vectorised ``normalize_state``: each distinct value is normalised once."""
    codes, uniques = pd.factorize(names, use_na_sentinel=True)
    mapped = pd.array([normalize_state(u) for u in uniques] + [None], dtype="str")
    return pd.Series(mapped[codes], index=names.index, dtype="str")


STATE_CAPITALS: dict[str, str] = {
    "AGUASCALIENTES": "AGUASCALIENTES",
    "MEXICALI": "BAJA CALIFORNIA",
    "LA PAZ": "BAJA CALIFORNIA SUR",
    "CAMPECHE": "CAMPECHE",
    "TUXTLA GUTIERREZ": "CHIAPAS",
    "CHIHUAHUA": "CHIHUAHUA",
    "SALTILLO": "COAHUILA",
    "COLIMA": "COLIMA",
    "DURANGO": "DURANGO",
    "GUANAJUATO": "GUANAJUATO",
    "CHILPANCINGO": "GUERRERO",
    "PACHUCA": "HIDALGO",
    "GUADALAJARA": "JALISCO",
    "TOLUCA": "MEXICO",
    "MORELIA": "MICHOACAN",
    "CUERNAVACA": "MORELOS",
    "TEPIC": "NAYARIT",
    "MONTERREY": "NUEVO LEON",
    "OAXACA": "OAXACA",
    "PUEBLA": "PUEBLA",
    "QUERETARO": "QUERETARO",
    "CHETUMAL": "QUINTANA ROO",
    "SAN LUIS POTOSI": "SAN LUIS POTOSI",
    "CULIACAN": "SINALOA",
    "HERMOSILLO": "SONORA",
    "VILLAHERMOSA": "TABASCO",
    "CIUDAD VICTORIA": "TAMAULIPAS",
    "TLAXCALA": "TLAXCALA",
    "XALAPA": "VERACRUZ",
    "MERIDA": "YUCATAN",
    "ZACATECAS": "ZACATECAS",
}
"""The capital city of each state (Ciudad de México is its own capital), by cleaned name."""


def clean_place(name: str) -> str:
    """A place name upper-cased, without accents, white space collapsed."""
    return _clean(name)
