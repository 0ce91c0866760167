"""Which holdout customers an evaluation scores, and against what: the exclusion protocol and the sample.

One rule, run in memory (:func:`sample_customers`, for the benchmarks) and sharded through Beam
(:mod:`fashionrec.evaluation.holdout_ranking`, for the evaluate stage): a customer is kept when some
target is not already in their history (and they have a history, when ``customers_with_history_only``);
above ``max_eval_customers`` the kept customers with the smallest :func:`sampling_key` are scored. The key
hashes the customer id with the seed, so the sample does not depend on how the examples are sharded or
ordered, and a Beam combiner can pick it without holding the customers in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from fashionrec.config import EvaluateConfig
from fashionrec.model.features import EvalExamples


def sampling_key(seed: int, customer_id: str) -> int:
    """A customer's place in the seeded sample: a 63-bit hash of the seed and the id (smallest first)."""
    digest = hashlib.blake2b(f"{seed}\x00{customer_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def sampling_keys(seed: int, customer_ids: np.ndarray) -> np.ndarray:
    return np.array([sampling_key(seed, c) for c in customer_ids], np.int64)


def held_out(examples: EvalExamples, config: EvaluateConfig, window: int) -> EvalExamples:
    """The customers ``config.exclude`` evaluates, each history being what every system excludes (and the
    baselines use), each target list without what the history holds.

    ``all_seen`` keeps the whole training history, so nothing a customer interacted with is recommended
    or counted. ``window`` (the old protocol, kept to compare) cuts each history to its last ``window``
    events first (0: none is cut), so older products are neither excluded nor removed from the targets.
    """
    if config.exclude == "window" and window > 0:
        examples = _last_events(examples, window)
    targets = [np.setdiff1d(t, h) for t, h in zip(examples.target_idxs, examples.history_idx, strict=True)]
    keep = np.flatnonzero([len(t) > 0 and (len(h) > 0 or not config.customers_with_history_only)
                           for t, h in zip(targets, examples.history_idx, strict=True)])
    return dataclasses.replace(examples.rows(keep), target_idxs=[targets[i] for i in keep])


def sample_customers(examples: EvalExamples, config: EvaluateConfig, window: int) -> EvalExamples:
    """:func:`held_out`, then at most ``max_eval_customers`` of them (smallest sampling keys), in the
    examples' order."""
    held = held_out(examples, config, window)
    if len(held.customer_ids) <= config.max_eval_customers:
        return held
    keys = sampling_keys(config.seed, held.customer_ids)
    return held.rows(np.sort(np.argsort(keys, kind="stable")[: config.max_eval_customers]))


def _last_events(examples: EvalExamples, window: int) -> EvalExamples:
    """Every history cut to its last ``window`` events."""
    return EvalExamples(customer_ids=examples.customer_ids,
                        history_idx=[h[-window:] for h in examples.history_idx],
                        history_weight=[w[-window:] for w in examples.history_weight],
                        history_age_days=[a[-window:] for a in examples.history_age_days],
                        target_idxs=examples.target_idxs, context=examples.context)
