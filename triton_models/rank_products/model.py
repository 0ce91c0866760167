"""Triton python model: customer vector [D] -> best products with scores (last step of every ensemble).

The vector is the request's CUSTOMER_VECTOR (`similar`, after its hero blend) or, without one, pooled
here from the request's history and context exactly as ``customer_vector`` pools it
(:mod:`fashionrec.contract.pooling`): `recommend` and `rerank` are this one python step.
Per request: optional TOP_K (absent = every candidate: `rerank`), optional candidate restriction
(CANDIDATE_PRODUCT_IDS, or CANDIDATE_SET naming a set published in ``candidate_sets.json``), optional
exclusions (EXCLUDE_PRODUCT_IDS; the history's purchases when EXCLUDE_PURCHASED is true; every product
of HISTORY_PRODUCT_IDS, the customer's whole seen-history up to ``max_history_length`` ids, when
EXCLUDE_SEEN is true; unknown ids exclude nothing). All
unrestricted rows of one execute() call asking the same k are ranked with ONE scan of the table (dynamic
batching groups requests; on a GPU only [rows x k] comes back); a restricted row scores only its candidates. Scores are sigmoid(p_u . q_i + prior_i), prior_i
the product's published popularity prior (0 without one); ties go to the earlier candidate. A bad request gets its own error; the others in the batch are answered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from fashionrec.contract import layout, ops, pooling, validation, wire
from fashionrec.contract.scoring import ScoringTable


class TritonPythonModel:
    """Exact top-k by dot product over the catalogue or a candidate subset."""

    def initialize(self, args: dict) -> None:
        """Load this version's catalogue, pooling, candidate sets and limits; put the table on the instance's
        device."""
        wire.install(pb_utils)  # BYTES inputs decoded at numpy speed, not the stub's per-element loop
        self.refusals = validation.Refusals(pb_utils, args["model_name"], args["model_version"])
        folder = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        self.max_top_k = int(layout.config_parameter(config, "max_top_k"))
        self.max_candidates = int(layout.config_parameter(config, "max_candidates"))
        self.purchase = layout.config_parameter(config, "purchase_event_type").encode("utf-8")
        embeddings, ids = layout.load_catalogue(folder)
        self.table = ScoringTable(embeddings, layout.config_parameter(config, "table_dtype"),
                                  args.get("model_instance_kind", "CPU"), int(args.get("model_instance_device_id", 0)),
                                  prior=layout.load_prior(folder, len(ids)))
        self.product_ids = np.array(ids, dtype=np.object_)
        self.index = {pid: row for row, pid in enumerate(ids)}
        max_history_length = int(layout.config_parameter(config, "max_history_length"))
        self.pooling = pooling.HistoryPooling.load(folder, embeddings, self.index, max_history_length)
        sets_file = folder / layout.CANDIDATE_SETS_FILE
        named = layout.load_json(sets_file) if sets_file.exists() else {}
        self.named_sets = {name: validation.known_rows(self.index, [p.encode("utf-8") for p in members], name)
                           for name, members in named.items()}

    def execute(self, requests: list) -> list:
        """Parse every request, rank all unrestricted rows at once (one scan of the table per k), then
        each restricted row over its candidates."""
        parsed = []
        for request in requests:
            try:
                parsed.append(self._parse(request))
            except validation.RequestError as error:
                parsed.append(error)
        jobs = [job for job in parsed if not isinstance(job, Exception)]
        for k in {job["k"] for job in jobs if job["k"] is not None}:
            open_rows = [row for job in jobs if job["k"] == k for row in job["rows"] if row["candidates"] is None]
            if open_rows:
                best = self.table.best(np.stack([row["vector"] for row in open_rows]),
                                       [row["excluded"] for row in open_rows], k)
                for row, (rows, logits) in zip(open_rows, best, strict=True):
                    row["ranked"] = (rows, ops.sigmoid(logits))
        return [self._respond(job) for job in parsed]

    def _respond(self, job) -> pb_utils.InferenceResponse:
        """PRODUCT_IDS [b, k'] and SCORES [b, k'] (k' = the fewest any row of the request kept)."""
        if isinstance(job, Exception):
            return self.refusals.response(job)
        ranked = [row["ranked"] if "ranked" in row else self._rank_candidates(row, job["k"]) for row in job["rows"]]
        width = min(len(rows) for rows, _ in ranked)
        return pb_utils.InferenceResponse([
            pb_utils.Tensor("PRODUCT_IDS", np.stack([self.product_ids[rows[:width]] for rows, _ in ranked])),
            pb_utils.Tensor("SCORES", np.stack([scores[:width] for _, scores in ranked]).astype(np.float32)),
        ])

    def _rank_candidates(self, row: dict, k: int | None) -> tuple[np.ndarray, np.ndarray]:
        """A restricted row: its candidates' catalogue rows, best first, and their scores (on the host)."""
        dots = self.table.scores_of(row["vector"], row["candidates"])
        positions = ops.rank_positions(dots, row["candidates"], row["excluded"], k or dots.size)
        return row["candidates"][positions], ops.sigmoid(dots[positions])

    def _parse(self, request) -> dict:
        """{"k": k or None (= all candidates), "rows": [{vector, candidates, excluded}]}; RequestError if bad."""
        vectors = self._vectors(request)
        candidate_ids, candidate_set = _input(request, "CANDIDATE_PRODUCT_IDS"), _input(request, "CANDIDATE_SET")
        k = self._top_k(_input(request, "TOP_K"), has_candidates=candidate_ids is not None or candidate_set is not None)
        excluded = self._excluded(request, len(vectors))
        rows = []
        for b, vector in enumerate(vectors):
            candidates = validation.candidate_rows(
                self.index, self.named_sets, None if candidate_ids is None else list(candidate_ids[b]),
                None if candidate_set is None else validation.decode(candidate_set[b])[0], self.max_candidates)
            rows.append({"vector": vector, "candidates": candidates, "excluded": excluded[b]})
        return {"k": k, "rows": rows}

    def _vectors(self, request) -> np.ndarray:
        """The request's CUSTOMER_VECTOR [b, D], or its histories pooled; RequestError if neither is usable."""
        vectors = _input(request, "CUSTOMER_VECTOR")
        if vectors is None:
            if _input(request, pooling.HISTORY_INPUT) is None:
                raise validation.RequestError(f"CUSTOMER_VECTOR or {pooling.HISTORY_INPUT} is required")
            return self.pooling.vectors(lambda name: _input(request, name))
        if not np.all(np.isfinite(vectors)):
            raise validation.RequestError("CUSTOMER_VECTOR must be finite")
        return vectors

    def _top_k(self, top_k: np.ndarray | None, has_candidates: bool) -> int | None:
        """The request's k; None (every candidate) only when it restricts the candidates."""
        if top_k is None:
            if not has_candidates:
                raise validation.RequestError("TOP_K is required unless the request gives candidates to rerank")
            return None
        values = top_k.reshape(-1)
        if np.unique(values).size != 1:
            raise validation.RequestError(f"TOP_K must be the same for every row of a request, got {values.tolist()}")
        error = validation.top_k_error(int(values[0]), self.max_top_k)
        if error:
            raise validation.RequestError(error)
        return int(values[0])

    def _excluded(self, request, num_rows: int) -> list[np.ndarray]:
        """Per row, the catalogue rows never to return (unknown ids are ignored: nothing to exclude; rows
        may repeat, ``ops.rank_positions`` blocks each once)."""
        explicit = _input(request, "EXCLUDE_PRODUCT_IDS")
        purchased, seen = _flags(request, "EXCLUDE_PURCHASED", num_rows), _flags(request, "EXCLUDE_SEEN", num_rows)
        history = _input(request, "HISTORY_PRODUCT_IDS") if purchased.any() or seen.any() else None
        if seen.any() and history is None:
            raise validation.RequestError("EXCLUDE_SEEN needs HISTORY_PRODUCT_IDS")
        types = _input(request, "HISTORY_EVENT_TYPES") if purchased.any() else None
        if purchased.any() and (history is None or types is None or types.shape != history.shape):
            raise validation.RequestError("EXCLUDE_PURCHASED needs HISTORY_EVENT_TYPES, one per history product")
        rows = []
        for b in range(num_rows):
            ids = [] if explicit is None else [explicit[b]]
            if seen[b]:  # the purchases are part of it
                ids.append(history[b])
            elif purchased[b]:
                ids.append(history[b][types[b] == self.purchase])
            rows.append(ops.lookup_rows(self.index, np.concatenate(ids)) if ids else np.zeros(0, np.int64))
        return rows


def _flags(request, name: str, num_rows: int) -> np.ndarray:
    """A TYPE_BOOL [1] input per row, False where the (optional) input is absent."""
    values = _input(request, name)
    return np.zeros(num_rows, bool) if values is None else values.reshape(num_rows, -1)[:, 0].astype(bool)


def _input(request, name: str) -> np.ndarray | None:
    """An input as numpy, or None when the (optional) input is absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()
