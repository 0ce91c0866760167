"""``fashionrec experiment start|stop|status|report``: A/B tests between published versions.

``start`` takes the experiment as a JSON file (or arms on the command line), serves every arm's version
beside the served one and writes the file shops route by (:func:`fashionrec.repository.versions.
start_experiment`); ``stop`` ends it; ``report`` computes the online report from a shop's event log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone

import click

from fashionrec import storage
from fashionrec.app.errors import access_errors, echo_json, json_output
from fashionrec.config import ConfigError, PipelineConfig, parse_assignments
from fashionrec.repository import versions
from fashionrec.repository.experiments import Experiment, ExperimentError, read_experiment
from fashionrec.repository.manifest import read_manifest

_repository_option = click.option("--model-repository", required=True, help="The model repository (local or gs://).")
_url_option = click.option("--url", default=None,
                           help="A running Triton (explicit model control) to load the arm models into, host:port.")
_protocol_option = click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
_set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override a config field, e.g. --set experiment.attribution_window_s=3600.")


@click.group("experiment")
def experiment_group() -> None:
    """A/B tests between published model versions, routed by the shop service."""


@contextmanager
def _user_errors(url: str | None = None, storage_uri: str | None = None) -> Iterator[None]:
    """Errors the user can act on, as one-line command errors instead of tracebacks: a Triton at ``url``
    or the Cloud Storage of ``storage_uri`` that cannot be reached or refuses the credentials as an
    AccessError (exit status 3)."""
    with access_errors(f"Triton at {url}" if url else "Triton", storage_uri or "Google Cloud"):
        try:
            yield
        except (ConfigError, ExperimentError, versions.VersionError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from error


def _config(overrides: Sequence[str]) -> PipelineConfig:
    try:
        return PipelineConfig().with_overrides(parse_assignments(overrides))
    except ConfigError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error


def experiment_from_options(definition: str | None, name: str | None, arms: Sequence[str], salt: str | None,
                            end: str | None, config: PipelineConfig) -> Experiment:
    """The experiment of a JSON file, or of ``--name`` and ``--arm NAME=VERSION[:SHARE]`` options (shares
    default to equal; the first arm is the control)."""
    if definition:
        if name or arms:
            raise ExperimentError("give either --file or --name and --arm, not both")
        return Experiment.from_dict(storage.read_json(definition), config.experiment)
    if not name or not arms:
        raise ExperimentError("give --file, or --name and at least two --arm NAME=VERSION[:SHARE]")
    parsed = []
    for text in arms:
        arm_name, _, rest = text.partition("=")
        version, _, share = rest.partition(":")
        if not version.strip().isdigit():
            raise ExperimentError(f"--arm must read NAME=VERSION[:SHARE], got {text!r:.80}")
        parsed.append({"name": arm_name, "version": int(version), "share": float(share) if share else 1.0 / len(arms)})
    return Experiment.from_dict({"name": name, "salt": salt or name, "arms": parsed, "end": end}, config.experiment)


@experiment_group.command("start")
@_repository_option
@click.option("--file", "definition", default=None, help="The experiment as JSON: name, salt, arms "
              "[{name, version, share, similar_alpha?}], start, end (local or gs://).")
@click.option("--name", default=None, help="The experiment's name (instead of --file).")
@click.option("--arm", "arms", multiple=True, metavar="NAME=VERSION[:SHARE]",
              help="An arm (repeatable, the first is the control; shares default to equal).")
@click.option("--salt", default=None, help="The assignment salt (default: the name).")
@click.option("--end", default=None, help="When assignment stops (ISO 8601; default: when stopped).")
@click.option("--settle-s", type=float, default=0.0, show_default=True,
              help="Seconds between writing the arm models and routing to them: with polling Tritons (k8s: "
                   "--repository-poll-secs=30) give more than the poll interval, e.g. 45.")
@_url_option
@_protocol_option
@_set_option
def start_command(model_repository: str, definition: str | None, name: str | None, arms: tuple[str, ...],
                  salt: str | None, end: str | None, settle_s: float, url: str | None, protocol: str,
                  overrides: tuple[str, ...]) -> None:
    """Serve every arm's version beside the served one and start routing visitors to their arms."""
    config = _config(overrides)
    with _user_errors(url, model_repository):
        experiment = experiment_from_options(definition, name, arms, salt, end, config)
        versions.start_experiment(model_repository, experiment, config.serving, url, protocol, settle_s)
    shares = ", ".join(f"{arm.name}: v{arm.version} {arm.share:.0%}" for arm in experiment.arms)
    click.echo(f"Experiment {experiment.name} started ({shares}); shops route by it within "
               f"{config.experiment.refresh_s:g} s.")


@experiment_group.command("stop")
@_repository_option
@click.option("--drain-s", type=float, default=None,
              help="Seconds to wait for shops to stop routing before the arm models go (default: experiment.refresh_s "
                   "+ 1; polling Tritons unload them at their next poll).")
@_url_option
@_protocol_option
@_set_option
def stop_command(model_repository: str, drain_s: float | None, url: str | None, protocol: str,
                 overrides: tuple[str, ...]) -> None:
    """End the running experiment: every visitor gets the served version again."""
    config = _config(overrides)
    drain = config.experiment.refresh_s + 1.0 if drain_s is None else drain_s
    with _user_errors(url, model_repository):
        experiment = versions.stop_experiment(model_repository, config.serving, url, protocol, drain)
    click.echo(f"Experiment {experiment.name} stopped; its arm models are unloaded.")


@experiment_group.command("status")
@_repository_option
def status_command(model_repository: str) -> None:
    """The running experiment as JSON (and whether visitors are being assigned now)."""
    with _user_errors(storage_uri=model_repository):
        experiment = read_experiment(model_repository)
    if experiment is None:
        click.echo("No experiment is running.")
        return
    click.echo(json.dumps({**experiment.to_dict(), "assigning": experiment.active(datetime.now(timezone.utc))},
                          indent=2))


@experiment_group.command("report")
@click.option("--log-dir", required=True, help="The shop's event log (online.event_log_dir; local or gs://).")
@click.option("--model-repository", default=None, help="Where the experiment is defined: the running one, or "
              "with --name one that was stopped (the manifest keeps them).")
@click.option("--name", default=None, help="Which experiment of --model-repository (default: the running one).")
@click.option("--file", "definition", default=None, help="The experiment's JSON definition, instead of a repository.")
@click.option("--catalogue", default=None, help="Prices (canonical catalogue; default: the catalogue the shop wrote "
              "beside its log).")
@click.option("--output", default="experiment-report", show_default=True,
              help="Folder for report.json and report.html (local or gs://). With `fashionrec --output json "
                   "experiment report`, report.json's document is printed on stdout too.")
@_set_option
def report_command(log_dir: str, model_repository: str | None, name: str | None, definition: str | None,
                   catalogue: str | None, output: str, overrides: tuple[str, ...]) -> None:
    """The online report of an experiment from the shop's event log: per-arm CTR, add-to-bag rate,
    conversion, revenue per visitor and order value, differences to control with intervals, the
    sample-ratio check and a verdict."""
    from fashionrec.evaluation.experiment_report import HTML_FILE, JSON_FILE, report_from_log

    config = _config(overrides)
    with _user_errors(storage_uri=log_dir):
        experiment = _reported_experiment(model_repository, name, definition, config)
        report = report_from_log(experiment, log_dir, output, config.experiment, catalogue)
    if json_output():
        echo_json(report.to_dict())
        return
    for arm in report.arms:
        click.echo(f"{arm.name:>12} v{arm.version}: {arm.visitors} visitors, {arm.impressions} impressions, "
                   + ", ".join(f"{metric} {_figure(value)}" for metric, value in arm.metrics.items()))
    click.echo(f"sample ratio p = {report.sample_ratio.p_value:.3g}; verdict ({report.primary_metric}): "
               f"{report.verdict}")
    click.echo(f"Report: {storage.join(output, HTML_FILE)} and {storage.join(output, JSON_FILE)}")


def _reported_experiment(model_repository: str | None, name: str | None, definition: str | None,
                         config: PipelineConfig) -> Experiment:
    """The experiment a report is about: a definition file, the running one, or a stopped one by name."""
    if definition:
        return Experiment.from_dict(storage.read_json(definition), config.experiment)
    if not model_repository:
        raise ExperimentError("give --model-repository (and --name for a stopped experiment) or --file")
    running = read_experiment(model_repository, config.experiment)
    if running is not None and name in (None, running.name):
        return running
    stopped = [e for e in read_manifest(model_repository).get("experiments", []) if e.get("name") == name]
    if not stopped:
        raise ExperimentError(f"no experiment {name!r} in {model_repository}" if name else
                              f"no experiment is running in {model_repository}; name a stopped one with --name")
    record = {k: v for k, v in stopped[-1].items() if k != "stopped"}
    return Experiment.from_dict(record, config.experiment)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@experiment_group.command("compile")
@click.option("--output", default="fashionrec-experiment-report.yaml", show_default=True)
@click.option("--image", default=None, help="The component image its task runs (a pinned tag or digest).")
def compile_command(output: str, image: str | None) -> None:
    """Compile the experiment report as a one-step KFP v2 pipeline (Kubeflow, Vertex AI): parameters
    ``experiment`` (the JSON definition), ``log_dir`` and ``experiment_config``; its HTML shows in their UI."""
    from fashionrec.app.runner import compile_experiment_report

    try:
        compile_experiment_report(output, image)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--image") from error
    click.echo(f"Wrote {output}")
