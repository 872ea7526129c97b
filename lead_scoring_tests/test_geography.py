"""State normalisation and the LADA reference built from the phonenumbers geocoder."""

import pytest

from lead_scoring_assets.geography.ladas import build_lada_reference, states_of
from lead_scoring_assets.geography.states import CANONICAL_STATES, normalize_state


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("CDMX", "CIUDAD DE MEXICO"),
        ("Distrito Federal", "CIUDAD DE MEXICO"),
        ("  ciudad   de méxico ", "CIUDAD DE MEXICO"),
        ("Estado de México", "MEXICO"),
        ("Edo. Méx.", "MEXICO"),
        ("México", "MEXICO"),
        ("Nuevo León", "NUEVO LEON"),
        ("NL", "NUEVO LEON"),
        ("Coahuila de Zaragoza", "COAHUILA"),
        ("Michoacán de Ocampo", "MICHOACAN"),
        ("Veracruz de Ignacio de la Llave", "VERACRUZ"),
        ("jal", "JALISCO"),
        ("BC", "BAJA CALIFORNIA"),
        ("BCS", "BAJA CALIFORNIA SUR"),
        ("Sin.", "SINALOA"),
        ("GTO", "GUANAJUATO"),
        ("Q. Roo", "QUINTANA ROO"),
        ("Yucatán", "YUCATAN"),
        ("Atlántida", "ATLANTIDA"),
    ],
)
def test_normalize_state(raw, canonical):
    assert normalize_state(raw) == canonical


@pytest.mark.parametrize("blank", [None, "", "   ", float("nan")])
def test_blank_state_is_none(blank):
    assert normalize_state(blank) is None


def test_every_canonical_state_is_its_own_normal_form():
    assert all(normalize_state(state) == state for state in CANONICAL_STATES)
    assert len(CANONICAL_STATES) == 32


@pytest.fixture(scope="module")
def reference():
    return build_lada_reference()


@pytest.mark.parametrize(
    ("lada", "state"),
    [
        ("33", "JALISCO"),
        ("55", "CIUDAD DE MEXICO"),
        ("81", "NUEVO LEON"),
        ("667", "SINALOA"),
        ("999", "YUCATAN"),
        ("720", "MEXICO"),
        ("443", "MICHOACAN"),
        ("222", "PUEBLA"),
    ],
)
def test_known_ladas(reference, lada, state):
    assert reference.loc[reference.lada == lada, "state_name"].tolist() == [state]


def test_reference_covers_all_states_with_canonical_names(reference):
    assert set(reference.state_name) == set(CANONICAL_STATES)
    assert reference.lada.nunique() > 350
    assert not reference.duplicated().any()


def test_multi_state_lada_gets_one_row_per_state(reference):
    per_lada = reference.groupby("lada")["state_name"].apply(set)
    multi = per_lada[per_lada.map(len) > 1]
    assert {"JALISCO", "ZACATECAS"} in multi.tolist()
    assert len(multi) >= 5


@pytest.mark.parametrize(
    ("description", "states"),
    [
        ("Guadalajara, JAL", ["JALISCO"]),
        ("Jalisco", ["JALISCO"]),
        ("Estado de México", ["MEXICO"]),
        ("México", ["MEXICO"]),
        ("Toluca", ["MEXICO"]),
        ("Morelia", ["MICHOACAN"]),
        ("Jalisco/Zacatecas", ["JALISCO", "ZACATECAS"]),
        ("Conkal/Mérida, YUC", ["YUCATAN"]),
        ("Atlantis", []),
        ("Springfield, XX", []),
    ],
)
def test_description_forms(description, states):
    assert states_of(description, {"TOLUCA": "MEXICO", "MORELIA": "MICHOACAN"}) == states


def test_lada_naming_no_state_is_left_out():
    frame = build_lada_reference({"123": "Atlantis", "33": "Guadalajara, JAL"})
    assert frame.values.tolist() == [["33", "JALISCO"]]
