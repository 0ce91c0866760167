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
from fashionrec.config import ConfigError, PipelineConfig, parse_assignments
from fashionrec.repository import versions
from fashionrec.repository.experiments import Experiment, ExperimentError, read_experiment

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
def _user_errors() -> Iterator[None]:
    """Errors the user can act on, as one-line command errors instead of tracebacks."""
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
@_url_option
@_protocol_option
@_set_option
def start_command(model_repository: str, definition: str | None, name: str | None, arms: tuple[str, ...],
                  salt: str | None, end: str | None, url: str | None, protocol: str,
                  overrides: tuple[str, ...]) -> None:
    """Serve every arm's version beside the served one and start routing visitors to their arms."""
    config = _config(overrides)
    with _user_errors():
        experiment = experiment_from_options(definition, name, arms, salt, end, config)
        versions.start_experiment(model_repository, experiment, config.serving, url, protocol)
    shares = ", ".join(f"{arm.name}: v{arm.version} {arm.share:.0%}" for arm in experiment.arms)
    click.echo(f"Experiment {experiment.name} started ({shares}); shops route by it within "
               f"{config.experiment.refresh_s:g} s.")


@experiment_group.command("stop")
@_repository_option
@click.option("--drain-s", type=float, default=None,
              help="Seconds to wait for shops to stop routing before the arm models go (default: experiment.refresh_s + 1).")
@_url_option
@_protocol_option
@_set_option
def stop_command(model_repository: str, drain_s: float | None, url: str | None, protocol: str,
                 overrides: tuple[str, ...]) -> None:
    """End the running experiment: every visitor gets the served version again."""
    config = _config(overrides)
    drain = config.experiment.refresh_s + 1.0 if drain_s is None else drain_s
    with _user_errors():
        experiment = versions.stop_experiment(model_repository, config.serving, url, protocol, drain)
    click.echo(f"Experiment {experiment.name} stopped; its arm models are unloaded.")


@experiment_group.command("status")
@_repository_option
def status_command(model_repository: str) -> None:
    """The running experiment as JSON (and whether visitors are being assigned now)."""
    with _user_errors():
        experiment = read_experiment(model_repository)
    if experiment is None:
        click.echo("No experiment is running.")
        return
    click.echo(json.dumps({**experiment.to_dict(), "assigning": experiment.active(datetime.now(timezone.utc))},
                          indent=2))
