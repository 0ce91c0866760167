"""How a catalogue update extends the served candidate sets (hand-checked; the update itself is drilled on a
real tritonserver in tests/serving/test_embed_products.py)."""

from __future__ import annotations

from fashionrec.repository.catalogue import sets_with_new_products


def test_new_products_join_new_in_and_their_category_set_when_the_version_has_category_sets():
    served = {"new_in": ["P9"], "category:dress": ["P1", "P2"], "sale": ["P2"]}
    updated = sets_with_new_products(served, ["N1", "N2", "N3"], ["dress", "boots", "dress"])
    assert updated == {"new_in": ["P9", "N1", "N2", "N3"], "category:dress": ["P1", "P2", "N1", "N3"],
                       "sale": ["P2"], "category:boots": ["N2"]}
    assert served == {"new_in": ["P9"], "category:dress": ["P1", "P2"], "sale": ["P2"]}  # the served ones untouched


def test_a_version_without_category_sets_gets_none_made_up():
    assert sets_with_new_products({"sale": ["P2"]}, ["N1"], ["dress"]) == {"sale": ["P2"], "new_in": ["N1"]}
