"""The shop's log as the next pipeline run's input: a canonical dataset folder, optionally position-debiased.

``fashionrec pipeline run --dataset canonical --data-dir <log>`` trains from the log as it is. This makes
a separate folder when the run needs more than the log:
- ``history``: the past events that seeded the shop's customers (a real shop's log holds its whole past;
  a simulated one starts from a seed);
- ``debias``: every logged event gets an ``examination`` column, the examination probability of the
  position its product was shown at (:func:`fashionrec.evaluation.position_bias.event_examination`), from
  the curve estimated on the log's explored carousels. Training with ``train.position_debiasing=ips``
  then weighs each target by its inverse. The curve goes beside the data (``examination_curve.json``) so
  a run's weights can be traced back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from fashionrec import artifacts, storage
from fashionrec.evaluation.experiment_report import read_experiment_log
from fashionrec.evaluation.position_bias import SlotEstimate, best_fit, event_examination, examination_curve
from fashionrec.online.service import LOG_CATALOGUE_FILE

EVENTS_FOLDER = "events"
LOG_EVENTS_FILE, SEED_EVENTS_FILE = "log.parquet", "seed.parquet"
CURVE_FILE = "examination_curve.json"


@dataclass(frozen=True)
class TrainingData:
    """Where the dataset was written, and with ``debias``: the examination curve (per slot and as fitted, with
    the family the fit chose) and how many of the log's events got an examination."""

    folder: str
    log_events: int
    slots: tuple[SlotEstimate, ...] = ()
    curve: dict[int, float] = dataclasses.field(default_factory=dict)
    family: str = ""  # the fitted curve's family (position_bias.curve_fits), "" without a curve
    examined_events: int = 0


def training_data(log_dir: str, folder: str | Path, history: str | None = None,
                  debias_window_s: float | None = None) -> TrainingData:
    """Write ``folder`` (local): the catalogue the shop wrote beside its log, and as events the log's events
    plus ``history``. With ``debias_window_s`` (the attribution window, ``experiment.attribution_window_s``)
    the log's events carry ``examination``; a log without exploration gets none (blank: unknown)."""
    events_dir = Path(folder) / EVENTS_FOLDER
    events_dir.mkdir(parents=True, exist_ok=True)
    events, impressions = read_experiment_log(log_dir)
    data = TrainingData(str(folder), len(events))
    if debias_window_s is not None:
        slots = examination_curve(events, impressions, debias_window_s)
        fit = best_fit(slots)
        curve, family = (fit.curve, fit.family) if fit else ({}, "")
        examination = event_examination(events, impressions, curve, debias_window_s)
        events = events.assign(examination=examination)
        data = dataclasses.replace(data, slots=tuple(slots), curve=curve, family=family,
                                   examined_events=int(examination.notna().sum()))
        storage.write_json(str(Path(folder) / CURVE_FILE), {"slots": [dataclasses.asdict(s) for s in slots],
                                                             "fitted": {str(k): v for k, v in curve.items()},
                                                             "family": family})
    events.to_parquet(events_dir / LOG_EVENTS_FILE, index=False)
    if history:
        storage.read_table(history).to_parquet(events_dir / SEED_EVENTS_FILE, index=False)
    with storage.open_input(storage.join(log_dir, LOG_CATALOGUE_FILE)) as stream:
        (Path(folder) / artifacts.CATALOGUE_FILE).write_bytes(stream.read())
    return data
