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

    .venv/bin/python benchmarks/simulate.py [--size default|small] [--days 7] [--visitors-per-day 200]
                                            [--variants] [--aa-salts 40] [--workdir DIR] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from scipy import stats

from fashionrec.app.cli import build_config
from fashionrec.app.lab import ShopInputs, ShopLab, publish_shuffled, publish_variant, report_of, resalted
from fashionrec.app.runner import LocalRun, run_local
from fashionrec.config import PipelineConfig
from fashionrec.evaluation.experiment_report import ExperimentReport, read_experiment_log
from fashionrec.evaluation.position_bias import examination_curve
from fashionrec.repository.experiments import Experiment

VARIANTS = {  # name -> the settings that make it (beside the defaults); "default" is the A/B's trained model
    "no prior": {"export.popularity_prior_weight": 0.0},
    "mean pooling": {"train.pooling": "mean"},
    "untrained": {"train.learning_rate": 0.0},
}
OFFLINE = ("recall@20", "ndcg@10", "mrr")
ONLINE = ("ctr", "conversion")
BROKEN_SHARE = 0.6  # the broken split's real share of the first arm (declared: 0.5)
MAX_SLOT = 10  # the examination curve's error is reported over slots 1..MAX_SLOT


def main() -> None:
    arguments = _arguments()
    config = build_config(arguments.size, tuple(arguments.set)).with_overrides(
        {"simulation.days": arguments.days, "simulation.visitors_per_day": arguments.visitors_per_day})
    workdir = Path(arguments.workdir or tempfile.mkdtemp(prefix="fashionrec-simulate-"))
    print(f"workdir {workdir}; shop {config.shop.num_customers} customers x {config.shop.num_products} products; "
          f"{config.simulation.days} days x {config.simulation.visitors_per_day} visitors", flush=True)
    run = run_local(str(workdir / "default"), config)
    inputs = ShopInputs.of_run(run)
    if arguments.study == "exploration":
        _exploration_study(inputs, config, workdir, arguments.exploration_share)
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
    parser.add_argument("--study", default="ab", choices=("ab", "exploration"))
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
    decay = config.simulation.examination_decay
    print(f"\n{'slot':>4} {'explored':>8} {'clicks':>6} {'estimate':>9} {'95 % interval':>17} {'true':>6} {'error':>7}")
    errors = []
    for estimate in curve:
        true = decay ** (estimate.slot - 1)
        errors.append(abs(estimate.examination / true - 1) if estimate.slot <= MAX_SLOT else 0.0)
        print(f"{estimate.slot:>4} {estimate.explored:>8} {estimate.clicks:>6} {estimate.examination:>9.3f} "
              f"[{estimate.low:>6.3f}, {estimate.high:>6.3f}] {true:>6.3f} {errors[-1]:>+7.1%}")
    ctr = run.report.comparison("explore", "ctr").lift
    print(f"\nexploration share {share:.0%}: CTR lift {_lift(ctr)} (its cost), "
          f"{sum(e.explored for e in curve)} explored carousels")
    worst = max(errors) if errors and all(math.isfinite(e) for e in errors) else math.nan  # NaN: a slot not estimable
    print(f"examination curve max relative error {worst:.1%} (positions 1-{MAX_SLOT})")


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
