"""Online experiments on the simulated shop, every part real (:mod:`fashionrec.app.lab`).

1. The pipeline trains the embedded shop's model (``--size``) and publishes it (v1); a copy with its
   embedding rows shuffled is published as an arm (a model known to be worse).
2. **A/B**: the trained model against the shuffled one, 50/50, for ``--days`` simulated days of
   ``--visitors-per-day`` visitors each, through a real Triton and the real shop service; the visits per
   second and the report (per-arm CTR, conversion, ... and each difference's interval).
3. **A/A**: the control arm's visitors assigned again under ``--aa-salts`` other salts: how often the
   report says "equal within noise" (95 % intervals: about 95 % of the time when nothing differs).
4. **Broken split**: the same visitors split 60/40 but declared 50/50: the sample-ratio check's p.
5. ``--variants``: more pipeline runs (no popularity prior, mean pooling, untrained towers), every one an
   arm of one experiment beside the default; each variant's offline holdout metrics beside its online
   CTR and conversion, and their rank correlation: does the offline gate choose what customers prefer?

The last line reads ``A/B default vs shuffled: CTR lift X [LO, HI]; conversion lift Y [LO, HI]; SRM p Z``:
the trained model's lift over the shuffled one (the experiment's control arm), with its 95 % interval.

``--study exploration`` instead runs the trained model in two arms, one exploring
(``--exploration-share``, ``--set online.exploration_pool=...``): exploration's cost in CTR and conversion,
and the examination curve estimated from the explored slots (:mod:`fashionrec.evaluation.position_bias`)
beside the simulator's true one, ending with ``examination curve max relative error X (positions 1-10)``.

``--study bias``: the trained model serves every visitor, exploring ``--exploration-share`` of carousels;
the examination curve is estimated from that log (pooled, as training uses it) and printed beside the true
one; the pipeline trains twice on the log alone, as logged (biased) and with each target weighted by its
inverse examination (``train.position_debiasing=ips``, debiased); the two then meet in an A/B on the days after
the log (``simulation.first_day``: fresh visitors, not the log's visits replayed). It ends with
``examination curve max relative error X (positions 1-10)`` and ``A/B debiased vs biased: CTR lift X [LO, HI]``.
``--study bias-ab --workdir DIR`` runs another A/B of the two models a finished ``--study bias`` left in DIR,
with this run's ``--days``, ``--visitors-per-day`` and ``--set simulation.seed=N``, under a salt of its own
(the A/B is the study's noisy part); it ends with the same CTR line.

``--study context``: on a shop with context effects (``--context-strength``, ``shop.context_strength``), the
pipeline with and without context features: offline, NDCG@10 of each on the same holdout customers with
the paired difference's interval, overall and by context slice; online, an A/B of the two. It ends with
``A/B context vs no context: CTR lift X [LO, HI]``. ``--study bias-context`` runs both. With ``--dataset
movielens-1m`` the context study runs its offline half on that dataset (its context: the ratings' UTC
hour and weekday).

    .venv/bin/python benchmarks/simulate.py [--size default|small] [--days 7] [--visitors-per-day 200]
                                            [--variants] [--aa-salts 40] [--workdir DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

from fashionrec import artifacts
from fashionrec.contract.context import FEATURES as CONTEXT_FEATURES
from fashionrec.embeddings_file import read_exported
from fashionrec.evaluation import metrics
from fashionrec.evaluation.bootstrap import Interval, paired_difference, paired_ratio_of_means
from fashionrec.evaluation.evaluate import in_context
from fashionrec.evaluation.holdout import sample_customers
from fashionrec.evaluation.holdout_ranking import pooled_weights
from fashionrec.evaluation.slices import Slice, context_slices
from fashionrec.evaluation.systems import embedding_system
from fashionrec.model.aggregation import AGGREGATION_FILE, Aggregation
from fashionrec.model.features import EvalExamples, load_eval_examples

from fashionrec.app.cli import build_config
from fashionrec.app.lab import ShopInputs, ShopLab, publish_shuffled, publish_variant, report_of, resalted
from fashionrec.app.runner import LocalRun, latest_local_run, run_local
from fashionrec.app.simulate import GroundTruth
from fashionrec.app.training_data import training_data
from fashionrec.config import PipelineConfig
from fashionrec.evaluation.experiment_report import ExperimentReport, read_experiment_log
from fashionrec.evaluation.position_bias import (SlotEstimate, best_fit, curve_fits, examination_curve,
                                                 fitted_curve)
from fashionrec.repository.experiments import Experiment
from fashionrec.repository.manifest import read_manifest

VARIANTS = {  # name -> the settings that make it (beside the defaults); "default" is the A/B's trained model
    "no prior": {"export.popularity_prior_weight": 0.0},
    "mean pooling": {"train.pooling": "mean"},
    "untrained": {"train.learning_rate": 0.0},
}
OFFLINE = ("recall@20", "ndcg@10", "mrr")
ONLINE = ("ctr", "conversion")
BROKEN_SHARE = 0.6  # the broken split's real share of the first arm (declared: 0.5)
MAX_SLOT = 10  # the examination curve's error is reported over slots 1..MAX_SLOT
OFFLINE_K = 10  # the context study's offline metric: NDCG@OFFLINE_K
BIAS_AB = "biased-vs-debiased"  # the bias study's A/B (its experiment's name and salt)
FOR_YOU = "for_you"  # the homepage carousel the model orders from the whole catalogue (the shop's touchpoint name)


def main() -> None:
    arguments = _arguments()
    config = build_config(arguments.size, tuple(arguments.set)).with_overrides(
        {"simulation.days": arguments.days, "simulation.visitors_per_day": arguments.visitors_per_day})
    workdir = Path(arguments.workdir or tempfile.mkdtemp(prefix="fashionrec-simulate-"))
    print(f"workdir {workdir}; shop {config.shop.num_customers} customers x {config.shop.num_products} products; "
          f"{config.simulation.days} days x {config.simulation.visitors_per_day} visitors", flush=True)
    if arguments.study == "context" and arguments.dataset != "synthetic":
        _offline_context_study(build_config(arguments.size, tuple(arguments.set), arguments.dataset), workdir,
                               arguments.dataset)
        return
    if arguments.study == "context":
        _context_study(config, workdir, arguments.context_strength)
        return
    if arguments.study == "bias-ab":
        _bias_ab_again(config, workdir)
        return
    run = run_local(str(workdir / "default"), config)
    inputs = ShopInputs.of_run(run)
    if arguments.study == "exploration":
        _exploration_study(inputs, config, workdir, arguments.exploration_share)
        return
    if arguments.study in ("bias", "bias-context"):
        _bias_study(inputs, config, workdir, arguments.exploration_share, run)
        if arguments.study == "bias-context":
            _context_study(config, workdir, arguments.context_strength)
        return
    shuffled = publish_shuffled(inputs.model_repository, config.serving)
    variants = {"default": (1, _offline(run))}
    if arguments.variants:
        variants.update(_train_variants(workdir, config, inputs))
    with ShopLab(inputs, config, workdir / "lab", echo=lambda line: print(line, flush=True)) as lab:
        ab = lab.run(_experiment("default-vs-shuffled", {"shuffled": shuffled, "default": 1}), config.simulation)
        print(f"\ntraffic: {ab.summary.visits} visits, {ab.summary.requests} requests in {ab.summary.seconds:.0f} s: "
              f"{ab.summary.visits_per_second:.2f} visits/s, {ab.summary.requests_per_second:.1f} requests/s "
              f"through the shop service and Triton; errors {ab.summary.errors or 'none'}")
        _print_report(ab.report)
        aa_equal, srm_p = _aa_and_broken_split(ab.log_dir, config, arguments.aa_salts)
        if arguments.variants:
            arms = {name: version for name, (version, _) in variants.items()}
            online = lab.run(_experiment("variants", arms), config.simulation).report
            _print_report(online)
            _print_offline_online(variants, online)
    print(f"\nA/A: {aa_equal} of {arguments.aa_salts} salts 'equal within noise' "
          f"({aa_equal / arguments.aa_salts:.0%}); broken split 60/40 declared 50/50: SRM p {srm_p:.2g}")
    ctr, conversion = (ab.report.comparison("default", metric).lift for metric in ("ctr", "conversion"))
    print(f"A/B default vs shuffled: CTR lift {_lift(ctr)}; conversion lift {_lift(conversion)}; "
          f"SRM p {ab.report.sample_ratio.p_value:.3g}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="default", choices=("default", "small"))
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--visitors-per-day", type=int, default=200)
    parser.add_argument("--aa-salts", type=int, default=40)
    parser.add_argument("--variants", action="store_true", help="also train variants: offline vs online")
    parser.add_argument("--study", default="ab",
                        choices=("ab", "exploration", "bias", "bias-ab", "context", "bias-context"))
    parser.add_argument("--dataset", default="synthetic", choices=("synthetic", "movielens-100k", "movielens-1m"),
                        help="--study context on another dataset: its offline half only (no simulated shop)")
    parser.add_argument("--context-strength", type=float, default=1.0,
                        help="the context study's shop: shop.context_strength (its context effects' logits)")
    parser.add_argument("--exploration-share", type=float, default=0.1)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args()


def _exploration_study(inputs: ShopInputs, config: PipelineConfig, workdir: Path, share: float) -> None:
    """The trained model with and without exploration, 50/50; the curve from the exploring arm's log."""
    experiment = Experiment.from_dict({"name": "exploration", "salt": "exploration", "arms": [
        {"name": "exploit", "version": 1, "share": 0.5},
        {"name": "explore", "version": 1, "share": 0.5, "exploration_share": share}]})
    with ShopLab(inputs, config, workdir / "lab", echo=lambda line: print(line, flush=True)) as lab:
        run = lab.run(experiment, config.simulation)
    _print_report(run.report)
    events, impressions = read_experiment_log(run.log_dir)
    explored = impressions[impressions["arm"] == "explore"]
    curve = examination_curve(events, explored, config.experiment.attribution_window_s)
    print()
    worst = _print_curve(curve, fitted_curve(curve), config.simulation.examination_decay)
    ctr = run.report.comparison("explore", "ctr").lift
    print(f"\nexploration share {share:.0%}: CTR lift {_lift(ctr)} (its cost), "
          f"{sum(e.explored for e in curve)} explored slots (an inserted slot each, or every shuffled one)")
    print(f"examination curve max relative error {worst:.1%} (positions 1-{MAX_SLOT})")


def _bias_study(inputs: ShopInputs, config: PipelineConfig, workdir: Path, share: float, shop_run: LocalRun) -> None:
    """Explore ``share`` of carousels for a period; estimate the curve from that log; train on the log twice,
    as logged (biased) and weighted by the inverse examination (debiased); their true expected clicks on the
    log's holdout customers and on ``shop_run``'s (the run that trained the served model: the shop's own
    customers, whom the A/B draws); then A/B the two on the days after the log, whose visitors and choices
    are drawn afresh (on the log's own days the A/B would replay the very visits the models learnt from)."""
    with ShopLab(inputs, config, workdir / "lab", echo=lambda line: print(line, flush=True)) as lab:
        collected = lab.run(Experiment.from_dict({"name": "collect", "salt": "collect", "arms": [  # an A/A: all explore
            {"name": arm, "version": 1, "share": 0.5, "exploration_share": share} for arm in ("a", "b")]}),
            config.simulation)
        data = training_data(collected.log_dir, workdir / "log-data",
                             debias_window_s=config.experiment.attribution_window_s)
        print(f"\nlog: {data.log_events} events, {data.examined_events} attributed to a shown position; "
              f"{sum(s.explored for s in data.slots)} explored slots ({share:.0%} exploration, "
              f"{config.online.exploration_mode})")
        worst = _print_curve(data.slots, data.curve, config.simulation.examination_decay)
        trained, runs = {}, {}
        for name, debiasing in (("biased", "off"), ("debiased", "ips")):
            runs[name] = run_local(str(workdir / name), config.with_overrides({"train.position_debiasing": debiasing}),
                                   dataset="canonical", data_dir=data.folder)
            trained[name] = publish_variant(runs[name], inputs.model_repository, config.serving,
                                            f"{name}, from the log")
            print(f"{name} (train.position_debiasing={debiasing}) -> v{trained[name]}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in _offline(runs[name]).items()), flush=True)
        truth = GroundTruth.generate(config.shop)
        _print_true_clicks(runs, truth, config, runs["debiased"], "the log")
        _print_true_clicks(runs, truth, config, shop_run, "the shop (the A/B's visitors, their own histories)")
        after_the_log = dataclasses.replace(config.simulation,
                                            first_day=config.simulation.first_day + config.simulation.days)
        ab = lab.run(_experiment(BIAS_AB, trained), after_the_log)  # fresh visitors, not the log's replayed
    _print_bias_ab(ab.report)
    print(f"\nexamination curve max relative error {worst:.1%} (positions 1-{MAX_SLOT})")
    print(f"A/B debiased vs biased: CTR lift {_lift(ab.report.comparison('debiased', 'ctr').lift)}")


def _bias_ab_again(config: PipelineConfig, workdir: Path) -> None:
    """Another A/B of the two models a finished bias study published (its ``workdir``), with ``config``'s
    simulation (days, visitors, seed) and a salt of its own, so that its visitors split afresh."""
    shop_run = latest_local_run(str(workdir / "default"))
    studies = [e for e in read_manifest(str(shop_run.model_repository)).get("experiments", ()) if e["name"] == BIAS_AB]
    if len(studies) != 1:
        raise SystemExit(f"{workdir} holds no finished --study bias (its repository has {len(studies)} "
                         f"experiments named {BIAS_AB!r})")
    (study,) = studies
    experiment = _experiment(f"{BIAS_AB}-seed{config.simulation.seed}",
                             {arm["name"]: arm["version"] for arm in study["arms"]})  # its name is its salt
    with ShopLab(ShopInputs.of_run(shop_run), config, workdir / f"lab-{experiment.name}",
                 echo=lambda line: print(line, flush=True)) as lab:
        ab = lab.run(experiment, config.simulation)
    _print_bias_ab(ab.report)
    print(f"\nA/B debiased vs biased: CTR lift {_lift(ab.report.comparison('debiased', 'ctr').lift)}")


def _print_bias_ab(report: ExperimentReport) -> None:
    """The bias study's A/B report and its *for you* CTR lift (the carousel the model alone orders)."""
    _print_report(report)
    if FOR_YOU in report.by_touchpoint:
        print(f"\nA/B debiased vs biased on {FOR_YOU}: CTR lift "
              f"{_lift(report.touchpoint_comparison('debiased', FOR_YOU).lift)}")


def _context_study(config: PipelineConfig, workdir: Path, strength: float) -> None:
    """On a shop with context effects: the pipeline with and without context features, offline (paired
    NDCG@10 on the same holdout, overall and by context slice), then online in an A/B."""
    shop = config.with_overrides({"shop.context_strength": strength})
    runs = {name: run_local(str(workdir / name), shop.with_overrides({"train.context_features": features}))
            for name, features in (("no-context", []), ("context", list(CONTEXT_FEATURES)))}
    offline = _offline_context(runs, shop)
    inputs = ShopInputs.of_run(runs["no-context"])  # v1: the context-free model serves, the context one is an arm
    version = publish_variant(runs["context"], inputs.model_repository, shop.serving, "the context model")
    with ShopLab(inputs, shop, workdir / "context-lab", echo=lambda line: print(line, flush=True)) as lab:
        ab = lab.run(_experiment("context", {"no-context": 1, "context": version}), shop.simulation)
    _print_report(ab.report)
    print(f"\noffline context vs no context: NDCG@10 {offline.mean:+.4f} [{offline.low:+.4f}, {offline.high:+.4f}]")
    print(f"A/B context vs no context: CTR lift {_lift(ab.report.comparison('context', 'ctr').lift)}")


def _offline_context_study(config: PipelineConfig, workdir: Path, dataset: str) -> None:
    """The context study's offline half on a named dataset (no simulator: it has no ground truth)."""
    runs = {name: run_local(str(workdir / name), config.with_overrides({"train.context_features": features}),
                            dataset=dataset)
            for name, features in (("no-context", []), ("context", list(CONTEXT_FEATURES)))}
    offline = _offline_context(runs, config)
    print(f"\noffline context vs no context on {dataset}: NDCG@10 {offline.mean:+.4f} "
          f"[{offline.low:+.4f}, {offline.high:+.4f}]")


def _offline_context(runs: dict[str, LocalRun], config: PipelineConfig) -> Interval:
    """Each run's NDCG@10 per holdout customer (every system on the same customers, each context model asked
    with the customer's first holdout event's context), the paired difference overall and by context slice."""
    transformed = str(runs["context"].artifact("transform-data", "transformed"))
    ndcg, examples = {}, None
    for name, run in runs.items():
        folder = run.artifact("export-embeddings", "embeddings")
        exported = read_exported(str(folder / artifacts.EMBEDDINGS_FILE))
        aggregation = Aggregation.read(str(folder / AGGREGATION_FILE))
        examples = examples or sample_customers(load_eval_examples(transformed), config.evaluate, aggregation.window)
        system = embedding_system(exported.embeddings, exported.prior, config.serving.table_dtype,
                                  in_context(str(folder), examples))
        ranked = system.rank(examples.history_idx, pooled_weights(aggregation, examples), OFFLINE_K)
        ndcg[name] = metrics.per_customer(ranked, examples.target_idxs, (OFFLINE_K,))[f"ndcg@{OFFLINE_K}"]
    everyone = Slice("all", np.arange(len(examples.customer_ids)), examples.target_idxs)
    print(f"\n{'slice':>20} {'customers':>9} {'no context':>10} {'context':>8} {'difference [95 % interval]':>32}")
    for found in (everyone, *context_slices(examples)):
        rows = found.customers
        difference = paired_difference(ndcg["context"][rows], ndcg["no-context"][rows])
        print(f"{found.name:>20} {len(rows):>9} {ndcg['no-context'][rows].mean():>10.4f} {ndcg['context'][rows].mean():>8.4f} "
              f"{difference.mean:>+9.4f} [{difference.low:+.4f}, {difference.high:+.4f}]")
    return paired_difference(ndcg["context"], ndcg["no-context"])


def _print_true_clicks(runs: dict[str, LocalRun], truth: GroundTruth, config: PipelineConfig, customers: LocalRun,
                       who: str) -> Interval:
    """What an A/B of the two models estimates, known exactly from the simulator's truth: for every holdout
    customer of ``customers`` (its transform's holdout, histories mapped to each model's products by id), the
    clicks its look along each model's top ``OFFLINE_K`` (its history excluded, as the service excludes what
    was seen) expects (:meth:`GroundTruth.expected_clicks`); the debiased model's lift with a paired bootstrap
    interval over customers."""
    embeddings = customers.artifact("export-embeddings", "embeddings")
    known = read_exported(str(embeddings / artifacts.EMBEDDINGS_FILE)).product_ids
    examples = sample_customers(load_eval_examples(str(customers.artifact("transform-data", "transformed"))),
                                config.evaluate, Aggregation.read(str(embeddings / AGGREGATION_FILE)).window)
    expected = {}
    for name, run in runs.items():
        folder = run.artifact("export-embeddings", "embeddings")
        exported = read_exported(str(folder / artifacts.EMBEDDINGS_FILE))
        mapped = _histories_in(examples, known, exported.product_ids)
        system = embedding_system(exported.embeddings, exported.prior, config.serving.table_dtype)
        ranked = system.rank(mapped.history_idx, pooled_weights(Aggregation.read(str(folder / AGGREGATION_FILE)),
                                                                 mapped), OFFLINE_K)
        expected[name] = np.array([truth.expected_clicks(customer, exported.product_ids[top[top >= 0]],
                                                         config.simulation)
                                   for customer, top in zip(examples.customer_ids, ranked, strict=True)])
    lift = paired_ratio_of_means(expected["debiased"], expected["biased"])
    print(f"true expected clicks on the top {OFFLINE_K} ({len(examples.customer_ids)} holdout customers of {who}, "
          f"the simulator's truth): biased {expected['biased'].mean():.4f}, "
          f"debiased {expected['debiased'].mean():.4f}; lift {lift.mean - 1:+.2%} "
          f"[{lift.low - 1:+.2%}, {lift.high - 1:+.2%}]", flush=True)
    return lift


def _histories_in(examples: EvalExamples, known: np.ndarray, product_ids: np.ndarray) -> EvalExamples:
    """``examples`` with histories given as rows of ``known`` moved to rows of ``product_ids`` (events of
    products the latter lacks dropped)."""
    row = {pid: i for i, pid in enumerate(product_ids)}
    moved = [np.array([row.get(pid, -1) for pid in known[history]], np.int64) for history in examples.history_idx]
    kept = [indices >= 0 for indices in moved]
    return dataclasses.replace(
        examples, history_idx=[m[k] for m, k in zip(moved, kept, strict=True)],
        history_weight=[w[k] for w, k in zip(examples.history_weight, kept, strict=True)],
        history_age_days=[a[k] for a, k in zip(examples.history_age_days, kept, strict=True)])


def _print_curve(slots: list[SlotEstimate], curve: dict[int, float], decay: float) -> float:
    """The curve per slot (the randomised-slot ratio and the pooled fit, ``curve``, that training uses) beside
    the simulator's true one, and each family's BIC; returns the fit's largest relative error over slots
    1..MAX_SLOT (NaN: a slot not estimated)."""
    print(f"{'slot':>4} {'explored':>8} {'clicks':>6} {'ratio':>7} {'95 % interval':>17} {'fitted':>7} {'true':>6} {'error':>7}")
    errors = []
    for estimate in slots:
        true, fitted = decay ** (estimate.slot - 1), curve.get(estimate.slot, math.nan)
        if estimate.slot <= MAX_SLOT:
            errors.append(abs(fitted / true - 1))
        print(f"{estimate.slot:>4} {estimate.explored:>8} {estimate.clicks:>6} {estimate.examination:>7.3f} "
              f"[{estimate.low:>6.3f}, {estimate.high:>6.3f}] {fitted:>7.3f} {true:>6.3f} {fitted / true - 1:>+7.1%}")
    fits, chosen = curve_fits(slots), best_fit(slots)
    if chosen:
        print("fitted: " + ", ".join(f"{fit.family} BIC {fit.bic:.1f}" for fit in fits.values())
              + f"; the lowest, {chosen.family}, is the curve")
    complete = len(errors) == MAX_SLOT and all(math.isfinite(e) for e in errors)
    return max(errors) if complete else math.nan


def _experiment(name: str, arms: dict[str, int]) -> Experiment:
    share = 1.0 / len(arms)
    return Experiment.from_dict({"name": name, "salt": name, "arms": [
        {"name": arm.replace(" ", "-"), "version": version, "share": share} for arm, version in arms.items()]})


def _offline(run: LocalRun) -> dict[str, float]:
    """The run's holdout metrics of its model (the pipeline's own evaluation, standard protocol)."""
    metrics = json.loads((run.artifact("evaluate-model", "evaluation") / "metrics.json").read_text())
    return {name: float(metrics["model"][name]) for name in OFFLINE}


def _train_variants(workdir: Path, config: PipelineConfig, inputs: ShopInputs) -> dict[str, tuple[int, dict]]:
    """Each variant trained by the pipeline on the same data (so the same holdout), published as an arm."""
    trained = {}
    for name, settings in VARIANTS.items():
        run = run_local(str(workdir / name.replace(" ", "-")), config.with_overrides(settings))
        version = publish_variant(run, inputs.model_repository, config.serving, f"variant {name}: {settings}")
        trained[name] = (version, _offline(run))
        print(f"variant {name!r} ({settings}) -> v{version}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in trained[name][1].items()), flush=True)
    return trained


def _aa_and_broken_split(log_dir: str, config: PipelineConfig, salts: int) -> tuple[int, float]:
    """A/A over ``salts`` salts and the broken split's SRM p, from the default arm's visitors of the A/B log."""
    events, impressions = read_experiment_log(log_dir)
    verdicts = []
    for salt in range(salts):
        same = _experiment(f"aa-{salt}", {"a": 1, "b": 1})
        verdicts.append(report_of(same, log_dir, config, resalted(events, impressions, "default", same)).verdict)
    declared = _experiment("broken", {"a": 1, "b": 1})
    real = Experiment.from_dict({**declared.to_dict(), "arms": [
        {"name": "a", "version": 1, "share": BROKEN_SHARE}, {"name": "b", "version": 1, "share": 1 - BROKEN_SHARE}]})
    broken = report_of(declared, log_dir, config, resalted(events, impressions, "default", real))
    return sum(v == "equal within noise" for v in verdicts), broken.sample_ratio.p_value


def _print_report(report: ExperimentReport) -> None:
    print(f"\n{'arm':>10} {'version':>7} {'visitors':>8} {'impr.':>7} " + " ".join(f"{m:>20}" for m in
                                                                            report.arms[0].metrics))
    for arm in report.arms:
        print(f"{arm.name:>10} {arm.version:>7} {arm.visitors:>8} {arm.impressions:>7} " + " ".join(
            f"{_number(v):>20}" for v in arm.metrics.values()))
    for comparison in report.comparisons:
        d, lift = comparison.difference, comparison.lift
        print(f"  {comparison.arm} - control, {comparison.metric:>20}: {d.mean:+.4g} [{d.low:+.4g}, {d.high:+.4g}], "
              f"lift {lift.mean:+.1%} [{lift.low:+.1%}, {lift.high:+.1%}]: {comparison.verdict}")
    for touchpoint, compared in report.by_touchpoint.items():
        for comparison in compared:
            print(f"  {comparison.arm} - control, CTR on {touchpoint:>12}: {_number(comparison.control)} -> "
                  f"{_number(comparison.value)}, lift {_lift(comparison.lift)}: {comparison.verdict}")
    print(f"  sample ratio p {report.sample_ratio.p_value:.3g}; verdict ({report.primary_metric}): {report.verdict}")


def _print_offline_online(variants: dict[str, tuple[int, dict]], online: ExperimentReport) -> None:
    """Each variant's offline metrics beside its online ones, and Spearman's rank correlation of each pair."""
    names = list(variants)
    arms = {arm.name: arm for arm in online.arms}
    print(f"\n{'variant':>14} {'version':>7} " + " ".join(f"{m:>10}" for m in (*OFFLINE, *ONLINE)))
    for name in names:
        version, offline = variants[name]
        arm = arms[name.replace(" ", "-")]
        print(f"{name:>14} {version:>7} " + " ".join(f"{offline[m]:>10.4f}" for m in OFFLINE)
              + " " + " ".join(f"{_number(arm.metrics[m]):>10}" for m in ONLINE))
    for offline_metric in OFFLINE:
        for online_metric in ONLINE:
            rho = stats.spearmanr([variants[n][1][offline_metric] for n in names],
                                  [arms[n.replace(" ", "-")].metrics[online_metric] for n in names]).statistic
            print(f"  Spearman({offline_metric}, online {online_metric}) = {rho:+.2f} over {len(names)} variants")


def _lift(lift: object) -> str:
    return f"{lift.mean:+.1%} [{lift.low:+.1%}, {lift.high:+.1%}]"  # type: ignore[attr-defined]


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    main()
