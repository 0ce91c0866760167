"""``fashionrec shop serve``: the shop's front door (:mod:`fashionrec.online`) in front of a running Triton."""

from __future__ import annotations

import click

from fashionrec.config import ConfigError, PipelineConfig, parse_assignments


@click.group("shop")
def shop_group() -> None:
    """The shop service: live customer state, the event API and a storefront, over Triton."""


@shop_group.command("serve")
@click.option("--catalogue", required=True, help="The shop's catalogue in the canonical schema (CSV or Parquet, "
                                                 "local or gs://), e.g. a run's ingested catalogue.parquet.")
@click.option("--model-repository", required=True, help="The model repository Triton serves (local or gs://): "
                                                        "its served version's trending list is the fallback.")
@click.option("--history", default=None, help="Past events (canonical schema, e.g. a run's events_train.parquet) "
                                              "that seed customers the store does not know yet.")
@click.option("--example-customers", default=8, show_default=True,
              help="How many customers of --history the storefront's start page offers.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set online.port=9000 --set online.store=redis (repeatable).")
def shop_serve_command(catalogue: str, model_repository: str, history: str | None, example_customers: int,
                       overrides: tuple[str, ...]) -> None:
    """Serve the shop's /v1 API and storefront until Ctrl-C (uvicorn)."""
    import uvicorn

    from fashionrec import storage
    from fashionrec.app.customers import sample_customers
    from fashionrec.online.service import build_app

    config = _config(overrides)
    events = storage.read_table(history) if history else None
    examples = sample_customers(events, example_customers) if events is not None else []
    app = build_app(config, catalogue, model_repository, examples, events)
    online = config.online
    click.echo(f"Storefront: http://{online.host}:{online.port}/   API: http://{online.host}:{online.port}/docs",
               err=True)
    uvicorn.run(app, host=online.host, port=online.port, log_level="warning", access_log=False)


@shop_group.command("training-data")
@click.option("--log", "log_dir", required=True, help="The shop's log folder (online.log_dir; local or gs://).")
@click.option("--output", required=True, help="A local folder for the dataset: catalogue.parquet and events/.")
@click.option("--history", default=None, help="Past events (canonical schema) to train on beside the log, e.g. "
                                              "the events that seeded the shop's customers.")
@click.option("--debias", is_flag=True, help="Give each logged event the examination of the position it was "
                                             "shown at, estimated from the log's explored carousels; train "
                                             "with --set train.position_debiasing=ips.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set experiment.attribution_window_s=600 (repeatable).")
def shop_training_data_command(log_dir: str, output: str, history: str | None, debias: bool,
                               overrides: tuple[str, ...]) -> None:
    """Write the shop's log as a canonical dataset for `fashionrec pipeline run --dataset canonical`."""
    from fashionrec.app.training_data import training_data

    config = _config(overrides)
    window = config.experiment.attribution_window_s if debias else None
    data = training_data(log_dir, output, history=history, debias_window_s=window)
    click.echo(f"{data.log_events} logged events -> {data.folder}")
    if debias:
        curve = ", ".join(f"{slot}: {value:.3f}" for slot, value in data.curve.items()) or "none (no explored clicks)"
        fitted = f"fitted as {data.family}, the lowest BIC" if data.family else "fitted"
        click.echo(f"examination curve by slot ({fitted}, relative to slot 1): {curve}")
        click.echo(f"{data.examined_events} of {data.log_events} events have an examination; train with "
                   f"--set train.position_debiasing=ips")


def _config(overrides: tuple[str, ...]) -> PipelineConfig:
    """The defaults with ``--set`` applied; a bad assignment is the option's usage error."""
    try:
        return PipelineConfig().with_overrides(parse_assignments(overrides))
    except ConfigError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error
