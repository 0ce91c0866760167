"""The exploration policy: hand-computed propensities, and that they are the policy's real frequencies."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from fashionrec.online.exploration import ExplorationPolicy

RANKED = ["t1", "t2", "t3", "t4", "b1", "b2", "b3", "b4", "b5", "b6"]  # 4 slots, then the pool
POLICY = ExplorationPolicy(share=0.2, positions=(1, 2, 3), pool=5)


class FixedDraws(random.Random):
    """Explores (random() = 0), then picks slot 2 and pool product b3."""

    def random(self) -> float:
        return 0.0

    def choice(self, options):  # type: ignore[override]
        return 2 if isinstance(options[0], int) else "b3"


def test_an_explored_carousel_by_hand() -> None:
    shown = POLICY.show(RANKED, 4, FixedDraws())
    assert shown.product_ids == ("t1", "b3", "t2", "t3") and shown.explored_slot == 2
    # t1 at 1: unexplored (0.8), or explored at slot 2 or 3 (it stays): 0.8 + 0.2 * 2/3
    # b3 at 2: explored (0.2), slot 2 (1/3), b3 of 5 (1/5)
    # t2 at 3: only when the slot is 1 or 2 (it moves down one): 0.2 * 2/3
    # t3 at 4: the slot is 1, 2 or 3: 0.2
    assert shown.propensities == pytest.approx((0.8 + 0.2 * 2 / 3, 0.2 / 3 / 5, 0.2 * 2 / 3, 0.2))


class NeverExplores(random.Random):
    def random(self) -> float:
        return 0.99


def shown_frequencies(policy: ExplorationPolicy, seed: int, draws: int = 60_000
                      ) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """How often ``policy`` showed each (product, position) over ``draws`` carousels of RANKED's first 4, and
    the propensity it logged for each."""
    rng = random.Random(seed)
    seen: Counter[tuple[str, int]] = Counter()
    logged: dict[tuple[str, int], float] = {}
    for _ in range(draws):
        shown = policy.show(RANKED, 4, rng)
        for position, (product, propensity) in enumerate(zip(shown.product_ids, shown.propensities), start=1):
            seen[product, position] += 1
            logged[product, position] = propensity
    return {key: count / draws for key, count in seen.items()}, logged


def test_an_unexplored_carousel_by_hand() -> None:
    shown = POLICY.show(RANKED, 4, NeverExplores())
    assert shown.product_ids == ("t1", "t2", "t3", "t4") and shown.explored_slot is None
    # t1 stays at 1 unless the slot is 1: 0.8 + 0.2 * 2/3; t2 unless 1 or 2: 0.8 + 0.2/3; t3: 0.8; t4 (never in
    # a slot <= 3 ... it drops out or stays only when unexplored): 0.8
    assert shown.propensities == pytest.approx((0.8 + 0.2 * 2 / 3, 0.8 + 0.2 / 3, 0.8, 0.8))


def test_propensities_are_the_policys_frequencies() -> None:
    frequencies, logged = shown_frequencies(POLICY, seed=7)
    for key, propensity in logged.items():
        assert frequencies[key] == pytest.approx(propensity, abs=0.006), key


def test_off_or_impossible_means_propensity_one() -> None:
    off = ExplorationPolicy(share=0.0).show(RANKED, 4, random.Random(1))
    assert off.propensities == (1.0,) * 4 and off.product_ids == tuple(RANKED[:4])
    nothing_beyond = POLICY.show(RANKED[:4], 4, random.Random(1))
    assert nothing_beyond.propensities == (1.0,) * 4 and nothing_beyond.explored_slot is None
    no_slot = ExplorationPolicy(share=0.5, positions=(6,)).show(RANKED, 4, random.Random(1))
    assert no_slot.propensities == (1.0,) * 4


@pytest.mark.parametrize(("fields", "message"), [({"share": 1.5}, "share"), ({"positions": (0, 1)}, "positions"),
                                                 ({"positions": ()}, "positions"), ({"pool": 0}, "pool"),
                                                 ({"mode": "swap"}, "mode")])
def test_a_policy_that_cannot_run_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExplorationPolicy(**fields)


# -- shuffle (RandTop-n) -----------------------------------------------------------------------------------

SHUFFLE = ExplorationPolicy(share=0.25, positions=(1, 2, 3), mode="shuffle")


class ReversingDraws(random.Random):
    """Explores (random() = 0) and shuffles by reversing."""

    def random(self) -> float:
        return 0.0

    def shuffle(self, items) -> None:  # type: ignore[override]
        items.reverse()


def test_a_shuffled_carousel_by_hand() -> None:
    shown = SHUFFLE.show(RANKED, 4, ReversingDraws())
    assert shown.product_ids == ("t3", "t2", "t1", "t4")  # the first max(positions) = 3 shuffled, t4 stays
    assert shown.shuffled_slots == 3 and shown.explored_slot is None
    # t3 at 1 and t1 at 3: only when shuffled there, 0.25 / 3; t2 at 2 (its own rank): 0.75 + 0.25 / 3;
    # t4 beyond the shuffled slots: always at 4
    assert shown.propensities == pytest.approx((0.25 / 3, 0.75 + 0.25 / 3, 0.25 / 3, 1.0))


def test_an_unshuffled_carousel_by_hand_and_no_pool_asked_for() -> None:
    shown = SHUFFLE.show(RANKED, 4, NeverExplores())
    assert shown.product_ids == ("t1", "t2", "t3", "t4") and shown.shuffled_slots is None
    assert shown.propensities == pytest.approx((0.75 + 0.25 / 3,) * 3 + (1.0,))
    assert SHUFFLE.ranked_needed(12) == 12 and POLICY.ranked_needed(12) == 12 + 5


def test_shuffled_propensities_are_the_policys_frequencies() -> None:
    frequencies, logged = shown_frequencies(SHUFFLE, seed=11)
    assert set(frequencies) == {(t, p) for t in ("t1", "t2", "t3") for p in (1, 2, 3)} | {("t4", 4)}
    for key, propensity in logged.items():
        assert frequencies[key] == pytest.approx(propensity, abs=0.006), key


def test_a_carousel_of_one_is_never_shuffled() -> None:
    shown = SHUFFLE.show(RANKED, 1, ReversingDraws())
    assert shown.product_ids == ("t1",) and shown.shuffled_slots is None and shown.propensities == (1.0,)
