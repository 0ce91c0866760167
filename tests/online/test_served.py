"""The served view's trending lists: the fallback of every page and the candidates of category carousels."""

from __future__ import annotations

from fashionrec.online import served
from fashionrec.online.served import ServedView

VIEW = ServedView(version=3, product_ids=frozenset("ABCDEFG"), trending=tuple("DBFAGCE"))


def test_trending_among_any_product_skips_the_excluded():
    assert VIEW.trending_among(None, {"B", "A"}, 3) == ["D", "F", "G"]


def test_trending_among_a_set_keeps_the_global_order_and_drops_unserved_members():
    dresses = frozenset({"A", "C", "F", "X"})  # X is not served: never chosen
    assert VIEW.trending_among(dresses, set(), 10) == ["F", "A", "C"]
    assert VIEW.trending_among(dresses, {"F"}, 1) == ["A"]
    assert VIEW.trending_among({"E", "B"}, set(), 5) == ["B", "E"]  # a plain set, not kept


def test_a_frozen_sets_order_is_kept_once_and_the_oldest_dropped_past_the_cap(monkeypatch):
    monkeypatch.setattr(served, "MAX_CACHED_ORDERS", 2)
    view = ServedView(version=1, product_ids=frozenset("ABC"), trending=tuple("CAB"))
    first, second, third = frozenset("AB"), frozenset("BC"), frozenset("AC")
    assert [view.trending_among(s, set(), 5) for s in (first, second, first)] == [["A", "B"], ["C", "B"], ["A", "B"]]
    assert list(view._orders) == [first, second]
    assert view.trending_among(third, set(), 5) == ["C", "A"]
    assert list(view._orders) == [second, third]
    assert view.trending_among({"B"}, set(), 5) == ["B"] and len(view._orders) == 2
