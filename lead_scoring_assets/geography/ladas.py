"""The LADA (area code) reference for Mexico, built from the phonenumbers geocoder."""

import pandas as pd
import phonenumbers.geodata

from lead_scoring_assets.geography.states import (
    CANONICAL_STATES,
    STATE_CAPITALS,
    clean_place,
    normalize_state,
)

MEXICO_PREFIX = "52"


def geocoder_descriptions(language: str = "es") -> dict[str, str]:
    """LADA -> the geocoder's description for +52 (e.g. '667' -> 'Culiacán')."""
    return {
        prefix[len(MEXICO_PREFIX) :]: names[language]
        for prefix, names in phonenumbers.geodata.GEOCODE_DATA.items()
        if prefix.startswith(MEXICO_PREFIX) and language in names
    }


def _city_index(descriptions: dict[str, str]) -> dict[str, str]:
    """City -> state, from the 'City/City, ABBR' descriptions and the state capitals."""
    index = dict(STATE_CAPITALS)
    for description in descriptions.values():
        if "," not in description:
            continue
        cities, abbreviation = description.rsplit(",", 1)
        state = normalize_state(abbreviation)
        if state in CANONICAL_STATES:
            for city in cities.split("/"):
                index.setdefault(clean_place(city), state)
    return index


def states_of(description: str, city_index: dict[str, str]) -> list[str]:
    """Canonical states a geocoder description names, in order; empty when it names none.

    'Guadalajara, JAL' -> [JALISCO]; 'Jalisco/Zacatecas' -> [JALISCO, ZACATECAS];
    'Toluca' -> [MEXICO] (a city known from the source or a state capital).
    """
    if "," in description:
        state = normalize_state(description.rsplit(",", 1)[1])
        return [state] if state in CANONICAL_STATES else []
    states: list[str] = []
    for part in description.split("/"):
        state = normalize_state(part)
        if state not in CANONICAL_STATES:
            state = city_index.get(clean_place(part))
        if state is not None and state not in states:
            states.append(state)
    return states


def build_lada_reference(descriptions: dict[str, str] | None = None) -> pd.DataFrame:
    """One (lada, state_name) row per state a LADA belongs to, sorted; LADAs naming no state
    are left out. ``state_name`` is the canonical name of SCORING_SPEC.md §4."""
    descriptions = geocoder_descriptions() if descriptions is None else descriptions
    city_index = _city_index(descriptions)
    rows = [
        (lada, state)
        for lada, description in descriptions.items()
        for state in states_of(description, city_index)
    ]
    frame = pd.DataFrame(rows, columns=["lada", "state_name"], dtype="str")
    return frame.sort_values(["lada", "state_name"], ignore_index=True)
