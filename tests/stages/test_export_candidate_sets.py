"""The category candidate sets the export stage writes for publishing (hand-checked)."""

from __future__ import annotations

import pandas as pd

from fashionrec.stages.export import category_candidate_sets


def test_one_set_per_category_in_product_order_of_the_exported_products():
    catalogue = pd.DataFrame({"product_id": ["P3", "P1", "P2", "P9"],
                              "category": ["dress", "jeans", "dress", "bag"]})
    sets = category_candidate_sets(catalogue, ["P1", "P2", "P3", "P4"])  # P4: not in the catalogue; P9 not exported
    assert sets == {"category:jeans": ["P1"], "category:dress": ["P2", "P3"]}
