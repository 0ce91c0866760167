"""The shop simulator (``fashionrec simulate``): its behaviour model by hand, then simulated customers visiting a
REAL shop service (`fashionrec shop serve`, uvicorn) over a REAL tritonserver, read back from the event log.

The service's shop is tests/online/conftest.py's: the synthetic shop of ``SHOP_SIZE``, so the simulator
regenerates its customers' true tastes from that config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fashionrec.app.simulate import (GroundTruth, Launcher, NewProductsUnsupported, ShopMismatch, SimulationSummary,
                                     bag_chance, check_catalogue, click_chances, draw_clicks, keenness,
                                     purchase_chance, run_simulation, sigmoid, simulate, visitors)
from fashionrec.app.simulate_commands import simulate_command
from fashionrec.config import ServingConfig, ShopConfig, SimulationConfig
from fashionrec.datasets.synthetic import LOUNGEWEAR, launched_product_id
from tests.online.conftest import SHOP_SIZE

# Enough traffic for clicks, bags and purchases on the small shop (whose served "model" is its categories plus
# noise: weaker than a trained one, hence the lower threshold), within seconds on two cores.
E2E = SimulationConfig(days=2, visitors_per_day=20, click_threshold=0.8, concurrency=4, seed=3)


# -- the behaviour model, by hand --------------------------------------------------------------------------

def test_click_chance_is_examination_times_the_sigmoid_of_affinity():
    simulation = SimulationConfig(examination_decay=0.5, click_sharpness=2.0, click_threshold=1.0)
    # slot 1: looked at surely, sigmoid(0) = 0.5; slot 2: 0.5 x sigmoid(2) = 0.5 x 0.880797;
    # slot 3: 0.25 x sigmoid(-2) = 0.25 x 0.119203; slot 4: an unknown product is never clicked
    expected = [0.5, 0.5 * 0.8807970779778823, 0.25 * 0.11920292202211755, 0.0]
    assert click_chances([1.0, 2.0, 0.0, math.nan], simulation) == pytest.approx(expected, abs=1e-12)


def test_bag_and_purchase_follow_keenness_and_price():
    simulation = SimulationConfig(bag_base=0.4, purchase_base=0.5, price_sensitivity=math.log(2))
    assert keenness(0.5) == pytest.approx(0.5)
    assert keenness(1.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert bag_chance(0.5, simulation) == pytest.approx(0.2)  # 0.4 x 0.5
    assert purchase_chance(0.5, 100.0, simulation) == pytest.approx(0.125)  # 0.5 x 0.5 x exp(-ln 2)
    assert purchase_chance(0.5, 0.0, simulation) == pytest.approx(0.25)


def test_drawn_clicks_have_the_modelled_frequencies():
    simulation = SimulationConfig(examination_decay=0.8, click_sharpness=4.0, click_threshold=0.5)
    affinity = np.array([0.9, 0.5, 0.2, 1.2])
    rng = np.random.default_rng(0)
    counts = np.zeros(len(affinity))
    trials = 20_000
    for _ in range(trials):
        counts[draw_clicks(rng, affinity, simulation)] += 1
    assert counts / trials == pytest.approx(click_chances(affinity, simulation), abs=0.01)


def test_expected_clicks_sum_the_click_chances_of_the_customers_true_affinities_in_page_order():
    truth = GroundTruth.generate(SHOP_SIZE)
    simulation = SimulationConfig(examination_decay=0.5, click_sharpness=2.0, click_threshold=1.0)
    shown = truth.shop.catalogue["product_id"].iloc[[3, 0]].tolist() + ["P-UNKNOWN"]
    affinity = truth.affinities(42).astype(np.float64)
    by_hand = sigmoid(2.0 * (affinity[3] - 1.0)) + 0.5 * sigmoid(2.0 * (affinity[0] - 1.0))  # the third: never
    assert truth.customer_index(truth.customer_id(42)) == 42
    assert truth.expected_clicks(truth.customer_id(42), shown, simulation) == pytest.approx(by_hand, abs=1e-12)


def test_visitors_are_seeded_distinct_customers_of_the_shop():
    truth = GroundTruth.generate(SHOP_SIZE)
    day = visitors(truth, E2E, 1)
    assert day == visitors(truth, E2E, 1) and day != visitors(truth, E2E, 2)
    assert len(set(day)) == E2E.visitors_per_day and all(0 <= c < SHOP_SIZE.num_customers for c in day)
    crowd = visitors(truth, dataclasses.replace(E2E, visitors_per_day=SHOP_SIZE.num_customers + 5), 1)
    assert len(crowd) == SHOP_SIZE.num_customers + 5  # more visitors than customers: some come twice


def test_a_run_from_a_later_first_day_draws_that_days_visitors_not_the_first_days_again():
    """A study's A/B after its log must not replay the log's visits: a run starting on day 3 visits whom a
    four-day run visits on days 3 and 4, and nobody in the order of days 1 and 2."""
    truth = GroundTruth.generate(SHOP_SIZE)
    sizes = [{"name": name, "products": count} for name, count in truth.category_sizes().items()]

    def homepage_visitors(simulation: SimulationConfig) -> list[str]:
        asked: list[str] = []

        def answer(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/categories":
                return httpx.Response(200, json={"categories": sizes})
            if request.url.path == "/v1/homepage":
                asked.append(request.url.params["customer_id"])
            return httpx.Response(503, json={"detail": "down"})  # every visit ends at its homepage

        asyncio.run(simulate("http://shop", SHOP_SIZE, simulation, echo=lambda line: None,
                             transport=httpx.MockTransport(answer)))
        return asked

    traffic = SimulationConfig(visitors_per_day=6, concurrency=1, seed=7)
    four_days = homepage_visitors(dataclasses.replace(traffic, days=4))
    from_day_3 = homepage_visitors(dataclasses.replace(traffic, days=2, first_day=3))
    assert len(four_days) == 24 and from_day_3 == four_days[12:]
    assert from_day_3 != four_days[:12] == homepage_visitors(dataclasses.replace(traffic, days=2))


def test_a_service_built_from_another_shop_is_refused_before_any_visit():
    truth = GroundTruth.generate(SHOP_SIZE)
    other = GroundTruth.generate(dataclasses.replace(SHOP_SIZE, seed=SHOP_SIZE.seed + 1))
    sizes = [{"name": name, "products": count} for name, count in other.category_sizes().items()]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"categories": sizes}))

    async def check() -> None:
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            await check_catalogue(client, truth)

    with pytest.raises(ShopMismatch, match="not the one this shop config generates"):
        asyncio.run(check())


def test_answers_other_than_2xx_are_counted_not_fatal():
    """A stand-in service (httpx's MockTransport): every second homepage is a 503, events are refused as
    unknown products; the run goes on and says so."""
    truth = GroundTruth.generate(SHOP_SIZE)
    sizes = [{"name": name, "products": count} for name, count in truth.category_sizes().items()]
    liked = truth.shop.catalogue["product_id"].iloc[int(np.argmax(truth.affinities(0)))]
    cards = [{"product_id": liked, "price": 10.0}]
    homepages = iter(range(1_000))

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/categories":
            return httpx.Response(200, json={"categories": sizes})
        if path == "/v1/homepage":
            if next(homepages) % 2:
                return httpx.Response(503, json={"detail": "store unavailable"})
            return httpx.Response(200, json={"request_id": "r1", "carousels": [{"products": cards}]})
        if path == "/v1/events":
            count = len(json.loads(request.content)["events"])
            return httpx.Response(200, json={"accepted": 0, "rejected": [{"index": i, "reason": "unknown_product"}
                                                                         for i in range(count)]})
        return httpx.Response(404, json={"detail": "not here"})

    simulation = SimulationConfig(days=1, visitors_per_day=10, click_threshold=-10.0, bag_base=0.0, concurrency=1)
    summary = asyncio.run(simulate("http://shop", SHOP_SIZE, simulation, echo=lambda line: None,
                                   transport=httpx.MockTransport(answer)))
    assert summary.visits == 10 and summary.pages["homepage"] == 5 and summary.errors["503"] == 5
    assert summary.events == {} and summary.rejected["unknown_product"] == 5  # one click a page, refused
    assert summary.errors["404"] >= 5  # product, category and search pages of the stand-in


def test_a_shop_with_context_sends_it_and_its_customers_choose_by_it():
    """Same catalogue as the shop's, so the same service: each visit has a device, the customer's region and
    their local time, sent with every event, and the region's colours gain affinity."""
    from fashionrec.datasets.synthetic import DEVICES, REGIONS

    truth = GroundTruth.generate(dataclasses.replace(SHOP_SIZE, context_strength=1.0))
    assert truth.category_sizes() == GroundTruth.generate(SHOP_SIZE).category_sizes()
    rng, now = np.random.default_rng(1), 1_796_000_000.0  # 2026-11-30 15:33 UTC
    context = truth.context(7, rng, now)
    region = list(REGIONS)[int(truth.shop.customer_regions[7])]
    offset, colours = REGIONS[region]
    assert context.device in DEVICES and context.region == region
    assert context.local_time == (pd.Timestamp(now, unit="s") + pd.Timedelta(hours=offset)).strftime("%Y-%m-%dT%H:%M:%S")
    gain = truth.context_affinity(context)
    favoured = truth.looks["colour"].isin(colours).to_numpy()
    assert np.allclose(gain[favoured & ~truth.looks["category"].isin(LOUNGEWEAR).to_numpy()], 1.0 / SHOP_SIZE.taste_sharpness)
    assert GroundTruth.generate(SHOP_SIZE).context(7, rng, now) is None  # no context shop, no context


def _page_queries(shop: ShopConfig) -> list[dict[str, str]]:
    """The query of every page request one simulated day of ``shop`` sends to a stand-in service (httpx's
    MockTransport, recording what the simulator's own client sends) whose every page shows the same three products."""
    truth = GroundTruth.generate(shop)
    sizes = [{"name": name, "products": count} for name, count in truth.category_sizes().items()]
    cards = [{"product_id": pid, "price": 10.0} for pid in truth.shop.catalogue["product_id"].iloc[:3]]
    queries: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/categories":
            return httpx.Response(200, json={"categories": sizes})
        if path == "/v1/events":
            return httpx.Response(200, json={"accepted": len(json.loads(request.content)["events"]), "rejected": []})
        queries.append(dict(request.url.params))
        page = {"request_id": "r1", "carousels": [{"products": cards}], "products": cards,
                "similar": {"products": cards}}
        return httpx.Response(200, json=page)

    simulation = SimulationConfig(days=1, visitors_per_day=4, click_threshold=-10.0, category_page_share=1.0,
                                  search_share=1.0, concurrency=1)
    asyncio.run(simulate("http://shop", shop, simulation, echo=lambda line: None,
                         transport=httpx.MockTransport(answer)))
    return queries


def test_page_requests_carry_the_visits_context_in_a_shop_with_context_and_none_otherwise():
    from fashionrec.datasets.synthetic import DEVICES, REGIONS

    started = time.time()
    with_context = _page_queries(dataclasses.replace(SHOP_SIZE, context_strength=1.0))
    assert len(with_context) > 4 * 3  # homepages, category pages, searches and product pages
    for query in with_context:
        assert {"customer_id", "device", "region", "local_time"} <= set(query)
        assert query["device"] in DEVICES and query["region"] in REGIONS
        offset_h = REGIONS[query["region"]][0]
        local = pd.Timestamp(query["local_time"]) - pd.Timedelta(hours=offset_h)  # the UTC it says
        assert pd.Timestamp(started, unit="s").floor("s") <= local <= pd.Timestamp(time.time(), unit="s")
    plain = _page_queries(SHOP_SIZE)
    assert plain and not any({"device", "region", "local_time"} & set(query) for query in plain)


def test_the_page_cap_ends_a_visit_between_carousels_never_along_one():
    """Every product of the first carousel is clicked (examination 1, any affinity clicks) although the cap is
    one product page: cutting the clicks along a carousel short would bend the examination curve. The product
    pages' similar items, and the second carousel, are then not looked at."""
    truth = GroundTruth.generate(SHOP_SIZE)
    sizes = [{"name": name, "products": count} for name, count in truth.category_sizes().items()]
    ids = truth.shop.catalogue["product_id"].tolist()
    first, second = ([{"product_id": pid, "price": 10.0} for pid in ids[start:start + 5]] for start in (0, 5))
    clicked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/categories":
            return httpx.Response(200, json={"categories": sizes})
        if path == "/v1/homepage":
            return httpx.Response(200, json={"request_id": "r1", "carousels": [{"products": first},
                                                                               {"products": second}]})
        if path.startswith("/v1/products/"):
            return httpx.Response(200, json={"request_id": "r2", "similar": {"products": second}})
        if path == "/v1/events":
            events = json.loads(request.content)["events"]
            clicked.extend(e["product_id"] for e in events if e["event_type"] == "click")
            return httpx.Response(200, json={"accepted": len(events), "rejected": []})
        return httpx.Response(404, json={"detail": "not here"})

    simulation = SimulationConfig(days=1, visitors_per_day=1, examination_decay=1.0, click_threshold=-100.0,
                                  bag_base=0.0, max_product_pages=1, category_page_share=0.0, search_share=0.0,
                                  concurrency=1)
    asyncio.run(simulate("http://shop", SHOP_SIZE, simulation, echo=lambda line: None,
                         transport=httpx.MockTransport(answer)))
    assert sorted(clicked) == sorted(ids[:5])


def test_launching_products_without_a_model_repository_is_refused_with_the_reason():
    with pytest.raises(NewProductsUnsupported, match="needs the model repository the shop service follows"):
        run_simulation("http://127.0.0.1:9", SHOP_SIZE, SimulationConfig(new_products_per_day=3))


def test_the_catalogue_check_allows_products_added_to_the_served_version():
    """Per category: the shop's own products, plus up to the number added to the served version (the service may
    not have learnt them yet); more than that, or fewer than its own, is another shop."""
    truth = GroundTruth.generate(SHOP_SIZE)
    own = truth.category_sizes()
    first, second = sorted(own)[:2]

    def check(served: dict[str, int], added: dict[str, int] | None) -> None:
        sizes = [{"name": name, "products": count} for name, count in served.items()]
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"categories": sizes}))

        async def run() -> None:
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
                await check_catalogue(client, truth, added)

        asyncio.run(run())

    check(own, {first: 2})  # not learnt yet
    check({**own, first: own[first] + 2}, {first: 2})  # learnt
    check({**own, "hats": 1}, {"hats": 1})  # a category only added products have
    for served, added, differing in (({**own, first: own[first] + 3}, {first: 2}, first),  # more than were added
                                     ({**own, second: own[second] + 1}, {first: 2}, second),  # added elsewhere
                                     ({**own, first: own[first] + 1}, None, first),  # none may be added
                                     ({**own, first: own[first] - 1}, {first: 2}, first)):  # fewer than its own
        with pytest.raises(ShopMismatch, match=rf"differ in {re.escape(differing)}\)"):
            check(served, added)


# -- customers visiting the real service -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Simulated:
    summary: SimulationSummary
    lines: list[str]
    seconds: float
    events: pd.DataFrame  # the service's event log
    impressions: pd.DataFrame  # what it showed, as logged


@pytest.fixture(scope="module")
def simulated(shop_triton, shop_files, tmp_path_factory) -> Simulated:
    """Two days of 20 visitors against a shop service of the module's own, whose log is read back once the
    service has stopped (SIGTERM: it flushes its impressions and rolls its journal into the log)."""
    from tests.online.conftest import shop_process

    shop = shop_process(tmp_path_factory.mktemp("simulated"), shop_files, shop_triton.grpc_url).start()
    try:
        lines: list[str] = []
        started = time.perf_counter()
        summary = run_simulation(shop.url, SHOP_SIZE, E2E, echo=lines.append)
        seconds = time.perf_counter() - started
    finally:
        shop.stop()
    log = shop.folder / "log"
    return Simulated(summary, lines, seconds, pd.read_parquet(log / "events"), pd.read_parquet(log / "impressions"))


def test_every_visit_is_answered_and_every_event_accepted(simulated):
    summary = simulated.summary
    print("\n" + "\n".join(simulated.lines), f"\n{summary}", f"\n{simulated.seconds:.1f} s")
    assert len(simulated.lines) == E2E.days and simulated.lines[0].startswith(f"day 1/{E2E.days}: 20 visits")
    assert summary.visits == summary.pages["homepage"] == E2E.days * E2E.visitors_per_day
    assert summary.errors == {} and summary.rejected == {} and summary.fallbacks == 0
    assert summary.page_requests == sum(summary.pages.values()) and summary.pages["product"] >= 1
    assert summary.unknown_products == 0 and summary.shown > 0
    assert summary.events["click"] >= 10 and summary.events.get("purchase", 0) >= 1
    assert summary.requests_per_second > 0


def test_the_event_log_holds_exactly_what_was_posted(simulated):
    logged = simulated.events["event_type"].value_counts().to_dict()
    assert logged == simulated.summary.events
    assert simulated.events["customer_id"].str.fullmatch(r"C\d{6}").all()  # the shop's own customers


def test_clicks_are_only_on_products_shown_to_that_customer(simulated):
    shown = simulated.impressions.explode("product_ids")
    clicks = simulated.events[simulated.events["event_type"] == "click"]
    by_customer = set(zip(shown["customer_id"], shown["product_ids"], strict=True))
    assert set(zip(clicks["customer_id"], clicks["product_id"], strict=True)) <= by_customer
    # every event names the page that showed its product: an impression of that request holds the product
    by_page = set(zip(shown["request_id"], shown["product_ids"], strict=True))
    events = simulated.events
    assert events["request_id"].notna().all()
    assert set(zip(events["request_id"], events["product_id"], strict=True)) <= by_page


def test_purchases_only_after_a_click_and_a_bag_of_the_same_product(simulated):
    events = simulated.events
    first = events.groupby(["customer_id", "product_id", "event_type"])["timestamp"].min().unstack()
    bought = first[first["purchase"].notna()]
    assert len(bought) >= 1
    assert (bought["click"] <= bought["add_to_bag"]).all() and (bought["add_to_bag"] <= bought["purchase"]).all()
    bagged = first[first["add_to_bag"].notna()]
    assert (bagged["click"] <= bagged["add_to_bag"]).all()  # no bag without its click (NaT would compare False)


def test_customers_click_what_their_true_taste_likes(simulated):
    """The behaviour model uses taste: per customer, the clicked products' mean true affinity exceeds that of
    all the products shown to them."""
    truth = GroundTruth.generate(SHOP_SIZE)
    tastes, latent, row = truth.shop.customer_tastes, truth.shop.product_latent, truth.product_row

    def mean_affinity(frame: pd.DataFrame, product_column: str) -> pd.Series:
        customers = frame["customer_id"].str[1:].astype(int).to_numpy()
        products = frame[product_column].map(row).to_numpy(dtype=int)
        affinity = np.einsum("ij,ij->i", tastes[customers], latent[products])
        return pd.Series(affinity, index=frame.index).groupby(frame["customer_id"]).mean()

    shown = simulated.impressions[["customer_id", "product_ids"]].explode("product_ids")
    clicks = simulated.events[simulated.events["event_type"] == "click"]
    gap = (mean_affinity(clicks, "product_id") - mean_affinity(shown, "product_ids")).dropna()
    print(f"\nclicked minus shown mean affinity per customer: mean {gap.mean():.3f}, "
          f"{(gap > 0).mean():.0%} of {len(gap)} customers above")
    assert len(gap) >= 10 and gap.mean() > 0.2 and (gap > 0).mean() > 0.8


# -- the command -----------------------------------------------------------------------------------------------

def test_the_command_simulates_and_refuses_another_shop(start_shop, shop_triton):
    shop = start_shop(shop_triton.grpc_url)
    size = [f"--set=shop.{f.name}={getattr(SHOP_SIZE, f.name)}" for f in dataclasses.fields(ShopConfig)]
    simulation = ["--set=simulation.days=1", "--set=simulation.visitors_per_day=3"]
    result = CliRunner().invoke(simulate_command, ["--shop-url", shop.url, *size, *simulation])
    assert result.exit_code == 0, result.output
    assert "day 1/1: 3 visits" in result.output and "total: 3 visits" in result.output and "no errors" in result.output
    other = CliRunner().invoke(simulate_command, ["--shop-url", shop.url, "--size", "small", *simulation])
    assert other.exit_code == 1 and "not the one this shop config generates" in other.output
    unknown = CliRunner().invoke(simulate_command, ["--size", "huge"])
    assert unknown.exit_code == 2 and "'huge' is not one of default, small" in unknown.output
    launches = CliRunner().invoke(simulate_command, ["--shop-url", shop.url, *size, "--set=simulation.new_products_per_day=2"])
    assert launches.exit_code == 2 and "needs the model repository the shop service follows" in launches.output


# -- products launched while customers visit ---------------------------------------------------------------------

LAUNCH_REFRESH_S = 0.5
LAUNCHES = dataclasses.replace(E2E, new_products_per_day=3)


@dataclasses.dataclass(frozen=True)
class Launched:
    first: SimulationSummary
    restarted: SimulationSummary
    lines: list[str]
    events: pd.DataFrame
    impressions: pd.DataFrame
    catalogue: pd.DataFrame  # the log's catalogue.parquet
    seconds: float


@pytest.fixture(scope="module")
def launched(shop_files, tmp_path_factory) -> Launched:
    """Two days with 3 products launched on day 2, against a shop service over a COPY of the shop's repository
    (with a content tower, to embed them) served by a Triton with explicit model control; then a restarted
    simulator run of two days, which must know the first run's launch and launch the next batch."""
    from fashionrec.serving.server import TritonServer
    from tests.online.conftest import shop_process
    from tests.online.test_new_products import copy_with_content_tower

    files = copy_with_content_tower(shop_files, tmp_path_factory.mktemp("launch-repository"))
    with TritonServer(files.model_repository, ServingConfig(), http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as triton:
        shop = shop_process(tmp_path_factory.mktemp("launch-shop"), files, triton.grpc_url,
                            f"online.served_refresh_s={LAUNCH_REFRESH_S}").start()
        launcher = Launcher(files.model_repository, ServingConfig(), triton.grpc_url, wait_s=10 * LAUNCH_REFRESH_S + 10)
        try:
            lines: list[str] = []
            started = time.perf_counter()
            first = run_simulation(shop.url, SHOP_SIZE, LAUNCHES, echo=lines.append, launcher=launcher)
            seconds = time.perf_counter() - started
            restarted = run_simulation(shop.url, SHOP_SIZE, dataclasses.replace(LAUNCHES, visitors_per_day=5, seed=4),
                                       echo=lines.append, launcher=launcher)
        finally:
            shop.stop()
    log = shop.folder / "log"
    return Launched(first, restarted, lines, pd.read_parquet(log / "events"), pd.read_parquet(log / "impressions"),
                    pd.read_parquet(log / "catalogue.parquet"), seconds)


def test_products_launched_on_day_two_are_shown_and_met(launched):
    print("\n" + "\n".join(launched.lines), f"\n{launched.first}", f"\n{launched.seconds:.1f} s")
    first, batch = launched.first, [launched_product_id(1, i) for i in range(3)]
    assert launched.lines[0].startswith("day 1/2: 20 visits") and "launched" not in launched.lines[0]
    assert launched.lines[1].startswith(f"day 2/2: launched 3 products ({batch[0]} .. {batch[-1]}) as version 3")
    assert first.launched == 3 and first.shown_launched >= 1
    assert first.errors == {} and first.rejected == {} and first.unknown_products == 0
    customers = launched.impressions[~launched.impressions["customer_id"].str.startswith("session:")]
    shown = set(customers.explode("product_ids")["product_ids"])
    assert set(batch) & shown  # shown to the simulated customers, not only to the launch's check
    # met: at least one event names a launched product (clicked from a page that showed it, with its request id)
    met = launched.events[launched.events["product_id"].isin(batch)]
    print(f"launched products: shown {first.shown_launched} times, {len(met)} events")
    assert len(met) >= 1 and met["request_id"].notna().all()


def test_a_restarted_run_knows_earlier_launches_and_launches_the_next_batch(launched):
    restarted = launched.restarted
    assert any(line.startswith(f"day 2/2: launched 3 products ({launched_product_id(2, 0)} .. ") for line in launched.lines)
    assert restarted.launched == 3 and restarted.errors == {} and restarted.rejected == {}
    assert restarted.unknown_products == 0  # the first run's launch is in the ground truth too
    ids = set(launched.catalogue["product_id"])
    assert {launched_product_id(b, i) for b in (1, 2) for i in range(3)} <= ids
    assert len(ids) == SHOP_SIZE.num_products + 6 == len(launched.catalogue)


def test_context_visits_reach_the_log_through_the_real_service(start_shop, shop_triton):
    shop = start_shop(shop_triton.grpc_url)
    simulation = SimulationConfig(days=1, visitors_per_day=10, click_threshold=0.0, concurrency=2, seed=5)
    summary = run_simulation(shop.url, dataclasses.replace(SHOP_SIZE, context_strength=1.0), simulation,
                             echo=lambda line: None)
    assert summary.rejected == {} and summary.events.get("click", 0) > 0
    shop.stop()  # SIGTERM: the journal rolled into the log
    logged = pd.read_parquet(shop.folder / "log" / "events")
    assert logged["device"].notna().all() and logged["region"].notna().all() and logged["local_time"].notna().all()
