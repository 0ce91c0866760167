"""``fashionrec simulate``: the embedded shop's customers, with their true tastes, visit a running shop service
(:mod:`fashionrec.app.simulate`)."""

from __future__ import annotations

import click


class _Size(click.ParamType):
    """A named shop size of ``fashionrec.app.cli.SIZES``, looked up when the command runs: the CLI imports this
    module, so this module cannot import the CLI's names when it loads."""

    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from fashionrec.app.cli import SIZES

        if value not in SIZES:
            self.fail(f"{value!r} is not one of {', '.join(sorted(SIZES))}", param, ctx)
        return str(value)


@click.command("simulate")
@click.option("--shop-url", default=None, metavar="URL",
              help="The running shop service (`fashionrec shop serve`); default: http://<online.host>:<online.port>.")
@click.option("--size", type=_Size(), default="default", show_default=True,
              help="Size of the embedded synthetic shop the service's catalogue and history came from (as given "
                   "to `fashionrec pipeline run` / `demo`: default or small).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field: the shop's (the same --set shop.* the service's data was made with) "
                   "and the simulation's, e.g. --set simulation.days=3 --set simulation.visitors_per_day=50 "
                   "(repeatable).")
@click.option("--model-repository", default=None, metavar="REPO",
              help="The model repository the shop service follows (local or gs://): products launched with "
                   "--set simulation.new_products_per_day=N are added to its served version (needed for N > 0).")
@click.option("--triton-url", default=None, metavar="HOST:PORT",
              help="A Triton with explicit model control (gRPC) to load each launch's version into; leave out for a "
                   "Triton that polls the repository.")
@click.option("--launch-wait-s", type=click.FloatRange(min=0.0), default=None,
              help="How long the shop service may take to show launched products (it picks up the served version "
                   "every online.served_refresh_s); default: 60 s, six of its default refreshes.")
def simulate_command(shop_url: str | None, size: str, overrides: tuple[str, ...], model_repository: str | None,
                     triton_url: str | None, launch_wait_s: float | None) -> None:
    """Simulated customers of the embedded shop visit a running shop service for simulation.days days: pages,
    clicks, bags and purchases, all through its API and into its event log. One line per day, then totals.
    With simulation.new_products_per_day > 0 and --model-repository, each day after the first launches new
    products of the same shop into the served model, and the customers meet them in the shop."""
    import httpx

    from fashionrec.app.cli import build_config
    from fashionrec.app.errors import REASON_CHARS, AccessError
    from fashionrec.messages import one_line
    from fashionrec.app.simulate import (LAUNCH_WAIT_S, LaunchFailed, Launcher, LaunchNotShown, NewProductsUnsupported,
                                         ShopMismatch, run_simulation)

    config = build_config(size, overrides)
    url = shop_url or f"http://{config.online.host}:{config.online.port}"
    wait_s = LAUNCH_WAIT_S if launch_wait_s is None else launch_wait_s
    launcher = Launcher(model_repository, config.serving, triton_url, wait_s) if model_repository else None
    click.echo(f"Simulating {config.simulation.days} days x {config.simulation.visitors_per_day} visitors "
               f"against {url} ...", err=True)
    try:
        summary = run_simulation(url, config.shop, config.simulation, echo=click.echo, launcher=launcher)
    except NewProductsUnsupported as error:
        raise click.BadParameter(str(error), param_hint="--set simulation.new_products_per_day") from error
    except (ShopMismatch, LaunchFailed, LaunchNotShown) as error:
        raise click.ClickException(str(error)) from error
    except httpx.HTTPError as error:  # the catalogue check, before any visit: nothing answers at the URL
        raise AccessError(f"cannot reach the shop service at {url}: {one_line(error, REASON_CHARS)}") from error
    events = ", ".join(f"{count} {kind}" for kind, count in sorted(summary.events.items())) or "no events"
    errors = f"; errors {dict(sorted(summary.errors.items()))}" if summary.errors else "; no errors"
    click.echo(f"total: {summary.visits} visits, {summary.page_requests} page requests, {events}; "
               f"CTR {summary.click_through_rate:.2%}; {summary.visits_per_second:.1f} visits/s, "
               f"{summary.requests_per_second:.1f} requests/s over {summary.seconds:.1f} s{errors}")

