"""Command-line pieces of the serving half: ``serve``, ``serve-canary``, ``model rollback``, ``catalogue add``
and ``refresh-prior``, ``embed-products`` and the printing behind ``recommend``, ``rerank`` and ``similar``.

``fashionrec/cli.py`` registers :data:`serve_command`, :data:`serve_canary_command`, :data:`rollback_command`,
:data:`catalogue_group` and :data:`embed_products_command` and calls
:func:`print_recommendations` / :func:`ask_and_print`.
Settings come from a ServingConfig: the one the parent command put in ``ctx.obj`` (a PipelineConfig or
a ServingConfig) if any, else the defaults; options given on the command line win.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import click

from fashionrec.config import MODEL_CONTROL_MODES, ConfigError, PipelineConfig, ServingConfig
from fashionrec.app.errors import access_errors, command_error
from fashionrec.app.client import FashionrecClient, Protocol, Recommendation, RecommendClient, RecommendError
from fashionrec.contract.content import ProductContent
from fashionrec.repository import versions
from fashionrec.serving.server import TritonServer, TritonStartError

if TYPE_CHECKING:
    import pandas as pd

_DEFAULTS = ServingConfig()
WAIT_INTERVAL_S = 0.5  # how often `serve` checks that tritonserver is still alive
def _serving_config(ctx: click.Context | None) -> ServingConfig:
    """The ServingConfig of the parent command's context object, else the defaults."""
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, PipelineConfig):
        return obj.serving
    return obj if isinstance(obj, ServingConfig) else ServingConfig()


def _pipeline_config(ctx: click.Context | None) -> PipelineConfig:
    """The parent command's PipelineConfig, else the defaults (with the parent's ServingConfig)."""
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, PipelineConfig):
        return obj
    return dataclasses.replace(PipelineConfig(), serving=_serving_config(ctx))


@contextmanager
def _user_errors(url: str | None = None, repository: str = "Google Cloud") -> Iterator[None]:
    """Errors the user can act on (bad input, an unknown version, the server's refusal) as one-line
    command errors instead of tracebacks; an unreachable or refusing Triton at ``url`` or Cloud Storage
    behind ``repository`` as an AccessError."""
    with access_errors(f"Triton at {url}" if url else "Triton", repository):
        try:
            yield
        except (ValueError, versions.VersionError, RecommendError) as error:
            raise command_error(error, f"Triton at {url}" if url else "Triton", repository) from error


def _loaded_note(url: str | None) -> str:
    """How a newly served version reaches the server, for the commands that publish one."""
    return f" and loaded into {url}" if url else " (a polling server picks it up; else restart or pass --url)"


def _utc(moment: pd.Timestamp) -> pd.Timestamp:
    """A time given without a zone is UTC."""
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (docker stop, Kubernetes) and SIGINT (Ctrl-C) stop the server cleanly."""
    raise KeyboardInterrupt


@click.command("serve")
@click.option("--model-repository", required=True, type=click.Path(exists=True, file_okay=False),
              help="Triton model repository written by `fashionrec publish`.")
@click.option("--http-port", type=int, default=None, help="HTTP port (default ServingConfig.http_port; 0 = free).")
@click.option("--grpc-port", type=int, default=None, help="gRPC port (default ServingConfig.grpc_port; 0 = free).")
@click.option("--metrics-port", type=int, default=None,
              help="Prometheus metrics port (default ServingConfig.metrics_port; 0 = free).")
@click.option("--host", default=None, help="Address to bind (default ServingConfig.host).")
@click.option("--model-control-mode", type=click.Choice(MODEL_CONTROL_MODES), default=None,
              help="Triton model control (default ServingConfig.model_control_mode).")
@click.option("--log-file", type=click.Path(dir_okay=False), default=None,
              help="Write the server log here (default: a temporary file removed at exit).")
@click.pass_context
def serve_command(ctx: click.Context, model_repository: str, http_port: int | None, grpc_port: int | None,
                  metrics_port: int | None, host: str | None, model_control_mode: str | None,
                  log_file: str | None) -> None:
    """Serve a model repository with Triton until Ctrl-C (or SIGTERM)."""
    serving = _serving_config(ctx)
    if host is not None:
        serving = dataclasses.replace(serving, host=host)
    server = TritonServer(model_repository, serving, http_port=http_port, grpc_port=grpc_port,
                          metrics_port=metrics_port, model_control_mode=model_control_mode,
                          log_path=log_file, progress=_progress)
    # Both explicitly: a process started with SIGINT ignored (a background job, or a parent such as a
    # Beam runner that ignores it) would otherwise never see Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        with server:
            _announce(server)
            status = _wait_for_exit(server)
    except TritonStartError as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        click.echo("Stopped tritonserver.", err=True)
        return
    raise click.ClickException(f"tritonserver exited unexpectedly with status {status}")


@click.command("serve-canary")
@click.option("--model-repository", required=True,
              help="The model repository Triton serves (local or gs://): the canary asks about the first products "
                   "of the version Triton answers with.")
@click.option("--triton-url", required=True, help="Triton's gRPC endpoint, host:port (in a pod: 127.0.0.1:8001).")
@click.option("--port", type=click.IntRange(0, 65_535), default=None,
              help="Port of GET /ready and GET /live (default ServingConfig.canary_port; 0 = free).")
@click.option("--host", default=None, help="Address to bind (default ServingConfig.canary_host; 0.0.0.0 in a pod).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a serving setting, e.g. --set serving.canary_cache_s=5 (repeatable).")
@click.pass_context
def serve_canary_command(ctx: click.Context, model_repository: str, triton_url: str, port: int | None,
                         host: str | None, overrides: tuple[str, ...]) -> None:
    """Answer readiness probes for a Triton: GET /ready is 200 when every touchpoint (recommend, rerank,
    similar) answers a real question, else 503 naming the failures; until Ctrl-C (or SIGTERM)."""
    from fashionrec.serving.canary import Canary, CanaryServer

    try:
        serving = _pipeline_config(ctx).with_settings(overrides).serving
    except ConfigError as error:
        raise click.BadParameter(str(error), param_hint="--set") from error
    host = serving.canary_host if host is None else host
    port = serving.canary_port if port is None else port
    canary = Canary(model_repository, triton_url, serving, log=_progress)
    try:
        server = CanaryServer(canary, host, port)
    except OSError as error:
        canary.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from error
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    click.echo(f"Readiness canary of Triton at {triton_url}: {server.url}/ready", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped the canary.", err=True)
    finally:
        server.server_close()
        canary.close()


def _announce(server: TritonServer) -> None:
    """Tell the user where the server answers (stdout: scripts may read it)."""
    click.echo(f"Triton is ready. Model repository: {server.model_repository}")
    click.echo(f"  HTTP:    http://{server.http_url}")
    click.echo(f"  gRPC:    {server.grpc_url}")
    click.echo(f"  metrics: {server.metrics_url}")
    click.echo("Press Ctrl-C to stop.", err=True)


def _wait_for_exit(server: TritonServer) -> int:
    """Block while tritonserver runs; return its status if it dies on its own."""
    while server.returncode is None:
        time.sleep(WAIT_INTERVAL_S)
    click.echo(server.log_tail(), err=True)
    return server.returncode


def print_recommendations(
    history_product_ids: Sequence[str],
    history_weights: Sequence[float] | None = None,
    k: int | None = None,
    url: str | None = None,
    protocol: Protocol = "grpc",
    serving: ServingConfig = _DEFAULTS,
) -> list[Recommendation]:
    """Ask a running server for recommendations, print them as a table and return them.

    ``url`` defaults to the local server on ServingConfig's port for ``protocol``. Server errors become
    a click.ClickException, so the CLI exits with a one-line message instead of a traceback.
    """
    try:
        with RecommendClient(url or default_url(protocol, serving), protocol, serving.model_name,
                             serving.client_timeout_s) as client:
            recommendations = client.recommend(history_product_ids, history_weights,
                                               serving.default_top_k if k is None else k)
    except RecommendError as error:
        raise command_error(error) from error
    _print_table(recommendations)
    return recommendations


def default_url(protocol: Protocol, serving: ServingConfig) -> str:
    """The local server on ServingConfig's port for ``protocol``."""
    return f"127.0.0.1:{serving.grpc_port if protocol == 'grpc' else serving.http_port}"


def ask_and_print(call: Callable[[FashionrecClient], list[Recommendation]], url: str | None = None,
                  protocol: Protocol = "grpc", serving: ServingConfig = _DEFAULTS,
                  title: str | None = None) -> list[Recommendation]:
    """Run one touchpoint call on a running server, print its answer as a table and return it.

    Server refusals become a click.ClickException: the CLI exits with the server's one-line reason.
    """
    try:
        with FashionrecClient(url or default_url(protocol, serving), protocol, serving) as client:
            ranked = call(client)
    except RecommendError as error:
        raise command_error(error) from error
    if title:
        click.echo(title)
    _print_table(ranked)
    return ranked


def _print_table(ranked: Sequence[Recommendation]) -> None:
    click.echo(f"{'rank':>4}  {'product_id':<20}  score")
    for rank, item in enumerate(ranked, start=1):
        click.echo(f"{rank:>4}  {item.product_id:<20}  {item.score:.4f}")


@click.command("rollback")
@click.option("--model-repository", required=True, help="The Triton model repository (local or gs://).")
@click.option("--to-version", type=int, default=None,
              help="Version to serve (default: the highest published version below the served one).")
@click.option("--url", default=None, help="A running Triton (explicit model control) to load it into, host:port.")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.pass_context
def rollback_command(ctx: click.Context, model_repository: str, to_version: int | None, url: str | None,
                     protocol: Protocol) -> None:
    """Serve an earlier published version again: every model pinned to it, hot-loaded without dropped requests."""
    serving = _serving_config(ctx)
    with _user_errors(url, model_repository):
        version = versions.rollback(model_repository, serving, to_version, url, protocol)
    click.echo(f"Serving version {version} of {model_repository}{_loaded_note(url)}.")


@click.group("catalogue")
def catalogue_group() -> None:
    """Change the served catalogue without retraining."""


@catalogue_group.command("add")
@click.option("--model-repository", required=True, help="The Triton model repository (local or gs://).")
@click.option("--products", required=True,
              help="CSV or Parquet of new products: product_id, title, category, price (+ description, colour, brand).")
@click.option("--url", default=None, help="A running Triton (explicit model control) to load the new version into.")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.pass_context
def catalogue_add_command(ctx: click.Context, model_repository: str, products: str, url: str | None,
                          protocol: Protocol) -> None:
    """Embed new products with the served content tower and serve them as the next version (rollback-able)."""
    from fashionrec.repository.catalogue import add_products

    with _user_errors(url, model_repository):
        update = add_products(model_repository, products, _serving_config(ctx), url, protocol)
    click.echo(f"Added {len(update.added)} products to version {update.base_version}: serving version "
               f"{update.version} ({update.num_products} products){_loaded_note(url)}.")


@catalogue_group.command("refresh-prior")
@click.option("--model-repository", required=True, help="The Triton model repository (local or gs://).")
@click.option("--events", required=True,
              help="CSV or Parquet of recent events: customer_id, product_id, event_type, timestamp (+ weight).")
@click.option("--as-of", default=None, help="ISO time the events are aged from (default: the latest event).")
@click.option("--url", default=None, help="A running Triton (explicit model control) to load the new version into.")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.pass_context
def catalogue_refresh_prior_command(ctx: click.Context, model_repository: str, events: str, as_of: str | None,
                                    url: str | None, protocol: Protocol) -> None:
    """Recompute the served popularity prior from recent events and serve it as the next version."""
    import pandas as pd

    from fashionrec.repository.catalogue import refresh_prior

    config = _pipeline_config(ctx)
    with _user_errors(url, model_repository):
        now = None if as_of is None else _utc(pd.Timestamp(as_of))
        refreshed = refresh_prior(model_repository, events, config.serving, config.export, url, protocol, now,
                                  config.ingest, config.train.inverse_examination_cap)
    click.echo(f"Popularity prior of version {refreshed.base_version} recomputed from {refreshed.events_used} events "
               f"({refreshed.events_dropped} dropped) as of {refreshed.as_of}: serving version {refreshed.version}"
               f"{_loaded_note(url)}.")


@click.command("embed-products")
@click.option("--title", required=True)
@click.option("--category", required=True)
@click.option("--price", required=True, type=float)
@click.option("--description", default=ProductContent.description, show_default=True)
@click.option("--colour", default=ProductContent.colour, show_default=True)
@click.option("--brand", default=ProductContent.brand, show_default=True)
@click.option("--url", default=None, help="Triton host:port (default: the local server).")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.pass_context
def embed_products_command(ctx: click.Context, title: str, category: str, price: float, description: str,
                           colour: str, brand: str, url: str | None, protocol: Protocol) -> None:
    """Print the served embedding of one new product (JSON list of floats)."""
    serving = _serving_config(ctx)
    product = ProductContent(title, category, price, description, colour, brand)
    try:
        with FashionrecClient(url or default_url(protocol, serving), protocol, serving) as client:
            embedding = client.embed_products([product])[0]
    except RecommendError as error:
        raise command_error(error) from error
    click.echo(json.dumps([round(float(v), 7) for v in embedding]))


if __name__ == "__main__":
    serve_command()
