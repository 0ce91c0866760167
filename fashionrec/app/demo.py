"""The end-to-end demo: run the pipeline, serve the published repository with Triton, show results."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from fashionrec import artifacts
from fashionrec import storage
from fashionrec.config import PipelineConfig, ServingConfig
from fashionrec.app.customers import load_events, recent_history, sample_customers
from fashionrec.app.runner import LocalRun, latest_local_run, run_local
from fashionrec.app.client import FashionrecClient, History, Protocol, RecommendError
from fashionrec.serving.server import TritonServer

SHOWN_HISTORY = 3  # most recent history items printed above each customer's recommendations
STARTED_POLL_S = 0.1  # how often the demo looks whether the shop service has started


def run_demo(workspace: str, config: PipelineConfig, num_customers: int, dataset: str = "synthetic",
             data_dir: str | None = None, verbose: bool = False, shop_seconds: float | None = None) -> None:
    """Pipeline locally → Triton on the published repository → recommendations for a few customers → the
    shop service and its storefront, until Ctrl-C (``shop_seconds``: that long; 0: not at all)."""
    click.echo("[1/4] Running the training pipeline locally with kfp.local ...", err=True)
    run = run_local(workspace, config, verbose=verbose, dataset=dataset, data_dir=data_dir)
    print_run_summary(run)
    if not Path(run.model_repository).exists():  # the gate refused the first model: there is nothing to serve
        raise click.ClickException(
            "the gate did not bless the model and no earlier version is published, so there is nothing to "
            f"serve; its reasons are above and in {run.artifact('evaluate-model', 'evaluation') / 'blessing.json'}")
    click.echo("[2/4] Starting Triton on the published model repository ...", err=True)
    with TritonServer(run.model_repository, config.serving, http_port=0, grpc_port=0, metrics_port=0) as server:
        click.echo(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}", err=True)
        click.echo("[3/4] Recommendations from Triton (gRPC):", err=True)
        events = load_events(_ingested(run))
        customers = sample_customers(events, num_customers, seed=config.shop.seed)
        _show(run, customers, None, server.grpc_url, "grpc", config.serving)
        if shop_seconds != 0:
            serve_shop(run, config, server.grpc_url, events, shop_seconds, Path(workspace) / "shop")


def serve_shop(run: LocalRun, config: PipelineConfig, triton_url: str, events: pd.DataFrame,
               seconds: float | None, folder: Path) -> None:
    """The shop service over the running Triton, its state, journal and event log under ``folder``, the
    run's events seeding its customers; serves until Ctrl-C, or for ``seconds``."""
    import threading
    import time

    import uvicorn

    from fashionrec.online.service import build_app

    config = config.with_overrides({"online.triton_url": triton_url,
                                    "online.sqlite_path": str(folder / "customers.sqlite3"),
                                    "online.event_log_dir": str(folder / "log"),
                                    "online.journal_dir": str(folder / "journal")})
    online = config.online
    examples = sample_customers(events, 8, seed=config.shop.seed)
    app = build_app(config, str(Path(_ingested(run)) / artifacts.CATALOGUE_FILE), run.model_repository, examples,
                    events)
    click.echo("[4/4] Starting the shop service (importing the customers' histories first) ...", err=True)
    server = uvicorn.Server(uvicorn.Config(app, host=online.host, port=online.port, log_level="warning",
                                           access_log=False))
    url = f"http://{online.host}:{online.port}"

    def announce_then_stop() -> None:
        """Print the storefront's address once it answers; stop the server ``seconds`` later, if given."""
        while not server.started and not server.should_exit:
            time.sleep(STARTED_POLL_S)
        click.echo(f"Storefront: {url}/   (pick a customer, click, add to bag)   API: {url}/docs")
        click.echo(f"Event log (a canonical dataset for the next run): {online.event_log_dir}", err=True)
        click.echo("Press Ctrl-C to stop." if seconds is None else f"Stopping in {seconds:g} s.", err=True)
        if seconds is not None:
            time.sleep(seconds)
            server.should_exit = True

    threading.Thread(target=announce_then_stop, daemon=True).start()
    server.run()


def print_run_summary(run: LocalRun) -> None:
    """Print the holdout figures, the gate's verdict and where the outputs are."""
    metrics_file = run.artifact("evaluate-model", "evaluation") / "metrics.json"
    blessing = json.loads((run.artifact("evaluate-model", "evaluation") / "blessing.json").read_text())
    metrics = json.loads(metrics_file.read_text())
    click.echo(f"\nRun artifacts: {run.run_dir}")
    width = max(len(name) for name in metrics)
    for name in metrics:  # model, the baselines and, once one exists, the published model
        figures = ", ".join(f"{k}={metrics[name][k]:.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "mrr", "auc"))
        click.echo(f"  {name:<{width}} {figures}")
    verdict = "blessed and published" if blessing["blessed"] else "NOT blessed: " + "; ".join(blessing["reasons"])
    click.echo(f"  gate: {verdict}")
    click.echo(f"Evaluation report: {run.artifact('evaluate-model', 'evaluation') / 'report.html'}")
    click.echo(f"Model repository: {run.model_repository}")


def show_recommendations(workspace: str, customer_ids: list[str], k: int | None, url: str | None, protocol: Protocol) -> None:
    serving = ServingConfig()
    port = serving.grpc_port if protocol == "grpc" else serving.http_port
    _show(latest_local_run(workspace), customer_ids, k, url or f"127.0.0.1:{port}", protocol, serving)


def _show(run: LocalRun, customer_ids: list[str], k: int | None, url: str, protocol: Protocol, serving: ServingConfig) -> None:
    """Each customer's recommendations as a shop would ask for them: the whole seen-history (up to
    ``max_history_length`` events; the server pools only the model's window) with EXCLUDE_SEEN, so
    nothing they already bought or viewed is shown again."""
    ingested = _ingested(run)
    events = load_events(ingested)
    catalogue = storage.read_table(storage.join(ingested, artifacts.CATALOGUE_FILE)).set_index("product_id")
    with FashionrecClient(url, protocol, serving) as client:
        for customer in customer_ids:
            try:
                history = recent_history(events, customer, serving.max_history_length)
            except KeyError as error:
                raise click.ClickException(str(error)) from error
            try:
                recommendations = client.recommend(History(history.product_ids, weights=history.weights), k,
                                                   exclude_seen=True)
            except RecommendError as error:
                raise click.ClickException(str(error)) from error
            click.echo(f"\nCustomer {customer} ({len(history.product_ids)} events, none recommended again), lately:")
            for product in history.product_ids[-SHOWN_HISTORY:]:
                click.echo(f"        {_describe(catalogue, product)}")
            click.echo("  recommended:")
            for rank, item in enumerate(recommendations, start=1):
                click.echo(f"  {rank:>3}. {item.score:.3f}  {_describe(catalogue, item.product_id)}")


def customer_history(workspace: str, customer_id: str, serving: ServingConfig) -> History:
    """A customer's recent events in the last local run, as a storefront would send them: ids, event
    types, weights and timestamps, aged from the log's last event (the logs are historical)."""
    events = load_events(_ingested(latest_local_run(workspace)))
    mine = events[events["customer_id"] == customer_id].tail(serving.max_history_length)
    if mine.empty:
        raise click.ClickException(f"customer {customer_id!r} has no events in {workspace}")
    seconds = _epoch_seconds(mine["timestamp"])
    return History(mine["product_id"].tolist(), mine["event_type"].astype(str).tolist(), seconds.tolist(),
                   mine["weight"].astype(float).tolist(), int(_epoch_seconds(events["timestamp"]).max()))


def _epoch_seconds(timestamps: pd.Series) -> pd.Series:
    """Whole seconds since 1970 (UTC) of a datetime column, naive (taken as UTC) or zoned."""
    times = pd.to_datetime(timestamps)
    times = times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
    return (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _describe(catalogue: pd.DataFrame, product_id: str) -> str:
    if product_id not in catalogue.index:
        return product_id
    row = catalogue.loc[product_id]
    new = "  [NEW]" if row["is_new"] else ""
    return f"{product_id}  {row['title']}  ({row['category']}, {row['colour']}, {row['price']:.2f}){new}"


def _ingested(run: LocalRun) -> str:
    return str(run.artifact("ingest-data", "ingested"))
