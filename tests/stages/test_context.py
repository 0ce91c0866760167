"""Context vocabularies from the training events, and each event's context values, by hand."""

from __future__ import annotations

import pandas as pd

from fashionrec.stages import context
from fashionrec.stages.context import ContextVocabulary


def test_the_vocabulary_keeps_the_most_frequent_values_and_notes_the_clock(tmp_path) -> None:
    events = pd.DataFrame({"customer_id": list("abcdef"), "device": ["mobile", "desktop", "mobile", None, "", "tablet"],
                           "region": ["SE", "GB", "GB", "US", "SE", "GB"],
                           "local_time": pd.to_datetime(["2026-12-05T20:00"] * 5 + [None])})
    events.to_parquet(tmp_path / "events.parquet")
    vocabulary = context.build_vocabulary(str(tmp_path / "events.parquet"), context.SOURCE_COLUMNS, max_values=2)
    # mobile twice, then desktop and tablet once each (ties by value); GB 3, SE 2 (US cut by the cap)
    assert vocabulary == ContextVocabulary({"device": ("mobile", "desktop"), "region": ("GB", "SE")}, clock=True)
    assert vocabulary.features == ("device", "region", "hour", "weekday")
    vocabulary.write(str(tmp_path))
    assert ContextVocabulary.read(str(tmp_path)) == vocabulary


def test_events_without_context_columns_have_no_vocabulary(tmp_path) -> None:
    pd.DataFrame({"customer_id": ["a"]}).to_parquet(tmp_path / "events.parquet")
    assert context.build_vocabulary(str(tmp_path / "events.parquet"), [], 10).features == ()
    assert ContextVocabulary.read(str(tmp_path)).features == ()  # no file: a transform from before context


def test_event_values_read_the_wall_clock_and_mark_unknowns() -> None:
    frame = pd.DataFrame({"device": ["mobile", None], "local_time": pd.to_datetime(["2026-12-05T20:30", None])})
    values = context.event_values(frame)  # 2026-12-05 is a Saturday: weekday 5
    assert values.to_dict("list") == {"device": ["mobile", ""], "region": ["", ""], "hour": [20, -1], "weekday": [5, -1]}


def test_a_model_learns_only_the_features_it_asks_for_and_the_data_has() -> None:
    vocabulary = ContextVocabulary({"device": ("mobile",), "region": ()}, clock=True)
    assert context.chosen(vocabulary, ("region", "hour", "device")) == ("device", "hour")
    assert context.chosen(vocabulary, ()) == ()
