"""A deterministic synthetic fashion shop: the embedded default dataset.

Why synthetic: no real fashion interaction log with customer ids may be shipped, and the demo and tests
need one that runs anywhere in minutes. The generator is built so that what a recommender should learn
is actually there:

* every product has a latent vector made of its style, colour and category (all visible in its
  content: brand, title and description words, colour, category) plus a product-specific part that
  only co-interaction reveals;
* every customer has a taste vector mixed from one or two styles plus colour and category leanings;
* events are drawn by softmax over affinity + popularity + novelty among products already launched,
  so cold-start products are learnable from content alone and popularity is a real (weaker) signal;
* after the log, :func:`launch_products` draws new products in the same latent world (the shop
  simulator launches them into a running shop, :mod:`fashionrec.app.simulate`).

Output follows the canonical input schema that ``fashionrec.stages.ingest`` validates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd

from fashionrec import storage
from fashionrec.config import EVENT_TYPES, ShopConfig

_STYLES: dict[str, tuple[str, ...]] = {
    "boho": ("boho", "floral", "flowing", "embroidered", "fringe", "peasant", "paisley", "tiered"),
    "minimal": ("minimal", "clean", "tailored", "structured", "sleek", "essential", "monochrome", "crisp"),
    "sporty": ("sporty", "active", "technical", "stretch", "breathable", "performance", "track", "mesh"),
    "classic": ("classic", "timeless", "heritage", "preppy", "pleated", "cable", "oxford", "refined"),
    "street": ("oversized", "graphic", "urban", "cargo", "utility", "logo", "baggy", "distressed"),
    "romantic": ("romantic", "lace", "ruffled", "puff", "sweetheart", "delicate", "satin", "bow"),
    "edgy": ("edgy", "studded", "leather", "biker", "chain", "ripped", "grunge", "buckle"),
    "coastal": ("coastal", "linen", "breezy", "striped", "nautical", "relaxed", "woven", "sun"),
    "glam": ("glam", "sequin", "metallic", "embellished", "velvet", "sparkle", "statement", "shimmer"),
    "vintage": ("vintage", "retro", "corduroy", "polka", "flared", "seventies", "houndstooth", "check"),
    "workwear": ("workwear", "smart", "blazer", "pinstripe", "wrap", "office", "polished", "wide"),
    "cosy": ("cosy", "knitted", "fleece", "chunky", "soft", "brushed", "lounge", "ribbed"),
    "festival": ("festival", "tie", "dye", "crochet", "neon", "cutout", "tassel", "psychedelic"),
    "scandi": ("scandi", "muted", "organic", "boxy", "wool", "understated", "cropped", "natural"),
    "tropical": ("tropical", "palm", "print", "vibrant", "resort", "halter", "bright", "hibiscus"),
    "goth": ("gothic", "dark", "corset", "mesh", "platform", "velvet", "lace", "moody"),
}
_CATEGORIES: tuple[str, ...] = (
    "dress", "jeans", "t-shirt", "shirt", "jumper", "jacket", "coat", "skirt", "trousers", "shorts",
    "hoodie", "blouse", "trainers", "boots", "sandals", "bag",
)
_COLOURS: tuple[str, ...] = (
    "black", "white", "navy", "grey", "beige", "red", "pink", "green", "blue", "yellow", "brown",
    "purple", "orange", "cream", "khaki", "silver",
)
_GENERIC_WORDS: tuple[str, ...] = (
    "cotton", "regular", "fit", "new", "season", "favourite", "everyday", "easy", "wear", "piece",
    "comfortable", "quality", "wardrobe", "staple", "with", "pockets", "button", "zip", "collar",
)
_BRAND_SYLLABLES: tuple[str, ...] = ("nor", "vel", "ari", "ko", "sten", "lum", "ora", "tis", "mar", "bel")
BRANDS_PER_STYLE = 4
LAUNCHED_PREFIX = "N"  # launched products' ids: N<batch>-<index>; the generated shop's are P<row>
_LAUNCHED_ID = re.compile(rf"{LAUNCHED_PREFIX}(\d{{5,}})-(\d{{5,}})")
LAUNCH_STREAM = 1_000_003  # separates the launches' seeds, (seed, LAUNCH_STREAM, batch), from any other draw
CONTEXT_STREAM = 1_000_033  # the context's draws, (seed, CONTEXT_STREAM): the events' other draws stay as they were
# Context (ShopConfig.context_strength > 0): the customer's region (with its UTC offset and favoured colours), the
# session's device, and the local hour. Evenings favour loungewear; mobile sessions are one event shorter.
REGIONS: dict[str, tuple[int, tuple[str, ...]]] = {
    "GB": (0, ("navy", "grey", "khaki")), "SE": (1, ("white", "beige", "cream")),
    "US-NY": (-5, ("black", "blue", "red")), "JP": (9, ("pink", "purple", "silver")),
}
DEVICES: dict[str, float] = {"mobile": 0.6, "desktop": 0.3, "tablet": 0.1}  # each session's device, and its odds
LOUNGEWEAR = ("hoodie", "jumper", "trousers")
EVENING_HOURS = range(18, 24)  # local
SHORTER_ON = "mobile"
_EVENT_NAMES = (EVENT_TYPES[0], "add_to_bag", "save_for_later", "purchase")  # _event_types' codes index this
# The events' race (:func:`_race`) fills dense (session x launched product) matrices. A day's sessions race in row
# chunks of at most this many cells, so the generator's memory is bounded whatever the shop's size: a cell costs about
# 20 bytes (float32 affinity, logits and exponential draws, an int64 argpartition index), and about 30 more for a
# moment with context (its bonus is computed in float64), so a chunk needs some 80 MiB (200 with context). Much
# smaller chunks are slower (each one's arrays are fresh memory to fault in); the default shop races as fast in these
# as in whole days. The output does not depend on it: the chunks draw consecutively from the same stream, and every
# step is row by row.
EVENT_CHUNK_CELLS = 4 * 2**20
# The fewest rows a chunk of a larger day has. A chunk's affinity is one matrix product, and BLAS takes other code
# paths for very few rows, whose sums may round otherwise (numpy multiplies a one-row matrix by gemv; OpenBLAS has
# small-matrix kernels): :func:`_row_chunks` keeps every chunk of a day at least half the rows the budget allows,
# and at least this, so only a day that small itself is raced by those paths, whole, as it always was.
MIN_CHUNK_ROWS = 2
# BLAS threads for the race's products: (chunk x latent_dim) @ (latent_dim x products) is too small to share out,
# and more threads only wake, spin and wait at every chunk (on 2 cores the default shop's events took 1.5-1.9x the
# CPU time with two). Each product's sums are the same with any number of threads (OpenBLAS splits the rows and
# the columns among threads, never the latent sum).
RACE_BLAS_THREADS = 1
# The pooled race (ShopConfig.race_candidates) looks for a session's distinct picks among this many times as many
# earliest finishers first (duplicates are rare beyond the most popular products); a row short of them is sorted.
DISTINCT_SEARCH = 4


@dataclass(frozen=True)
class SyntheticShop:
    """A generated shop: catalogue and event log in the canonical schema, plus ground truth.

    The ground truth (never shown to the pipeline) is what the events were drawn from, so that diagnostics
    and the shop simulator (:mod:`fashionrec.app.simulate`) can behave, and judge, by the same tastes.
    Product arrays follow the catalogue's rows (row i is ``P{i:06d}``), customer arrays the customer ids
    (row i is ``C{i:06d}``); affinity = ``customer_tastes @ product_latent.T``.
    """

    catalogue: pd.DataFrame
    events: pd.DataFrame
    product_styles: np.ndarray  # each product's style (index into style_words)
    product_latent: np.ndarray  # (products, latent_dim) float32: style + colour + category + own part
    log_popularity: np.ndarray  # (products,) the popularity that biased the events (popularity_strength x it)
    customer_tastes: np.ndarray  # (customers, latent_dim) float32, unit length
    customer_styles: np.ndarray  # (customers,) each customer's dominant style (index into style_words)
    style_words: tuple[tuple[str, ...], ...]  # each style's words, the ones its products' texts use
    customer_regions: np.ndarray | None = None  # (customers,) index into REGIONS; None: the shop has no context


def generate_shop(config: ShopConfig, with_events: bool = True) -> SyntheticShop:
    """Generate the catalogue and event log for ``config``; identical output for identical config.

    ``with_events=False`` leaves the event log empty (its columns only): the catalogue and the ground truth
    are drawn first, so they are the same, and skipping the log (most of the time, at the default size)
    serves the simulator, which needs only the tastes."""
    rng = np.random.default_rng(config.seed)
    styles = list(_STYLES)[: config.num_styles]
    world = _latent_world(rng, config, len(styles))
    catalogue, product_latent, product_styles, log_popularity = _catalogue(rng, config, styles, world)
    taste, customer_styles = _customer_tastes(rng, config, world)  # the next draws after the catalogue's
    context = np.random.default_rng((config.seed, CONTEXT_STREAM))
    regions = context.integers(0, len(REGIONS), size=config.num_customers) if config.context_strength > 0 else None
    events = (_events(rng, config, taste, catalogue, product_latent, log_popularity, regions, context) if with_events
              else pd.DataFrame({"customer_id": pd.Series(dtype=object), "product_id": pd.Series(dtype=object),
                                 "event_type": pd.Series(dtype=object),
                                 "timestamp": pd.Series(dtype="datetime64[ns, UTC]")}))
    return SyntheticShop(catalogue=catalogue, events=events, product_styles=product_styles,
                         product_latent=product_latent, log_popularity=log_popularity, customer_tastes=taste,
                         customer_styles=customer_styles, style_words=tuple(_STYLES[name] for name in styles),
                         customer_regions=regions)


def context_bonus(catalogue: pd.DataFrame, region: str, local_hour: int, strength: float) -> np.ndarray:
    """The logit every product gains in a session of ``region`` at ``local_hour``: ``strength`` for each of
    loungewear in the evening and the region's colours (0 everywhere at strength 0)."""
    evening = local_hour in EVENING_HOURS
    lounge = catalogue["category"].isin(LOUNGEWEAR).to_numpy() & evening
    favoured = catalogue["colour"].isin(REGIONS[region][1]).to_numpy()
    return (strength * (lounge.astype(np.float32) + favoured.astype(np.float32))).astype(np.float32)


def _latent_world(rng: np.random.Generator, config: ShopConfig, num_styles: int) -> dict[str, np.ndarray]:
    def unit(rows: int) -> np.ndarray:
        vectors = rng.normal(size=(rows, config.latent_dim))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return {
        "style": unit(num_styles),
        "colour": unit(len(_COLOURS)),
        "category": unit(len(_CATEGORIES)),
        "style_colours": rng.dirichlet(np.full(len(_COLOURS), 0.3), size=num_styles),
        "style_categories": rng.dirichlet(np.full(len(_CATEGORIES), 0.5), size=num_styles),
    }


def _catalogue(
    rng: np.random.Generator, config: ShopConfig, styles: list[str], world: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    n = config.num_products
    style, colour, category, brand, brands = _lines(rng, n, styles, world)
    price = _prices(rng, brands, brand)
    latent = _latent(rng, config, world, style, colour, category)
    launch = _launch_dates(rng, config)
    order = np.argsort(launch, kind="stable")  # product ids follow launch order, like a real catalogue
    style, colour, category, brand, price, latent, launch = (
        a[order] for a in (style, colour, category, brand, price, latent, launch)
    )
    titles, descriptions = _texts(rng, styles, style, colour, category, brands.names, brand)
    catalogue = _frame([f"P{i:06d}" for i in range(n)], titles, descriptions, category, colour, brands.names[brand],
                       price, launch)
    log_popularity = rng.normal(0.0, 1.0, size=n)
    return catalogue, latent.astype(np.float32), style, log_popularity


@dataclass(frozen=True)
class _Brands:
    """The shop's brands (``BRANDS_PER_STYLE`` a style: brand b belongs to style b // BRANDS_PER_STYLE) and
    each one's price level."""

    names: np.ndarray
    price_level: np.ndarray


def _lines(rng: np.random.Generator, n: int, styles: list[str], world: dict[str, np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, _Brands]:
    """The shop's brands, and ``n`` products' style, colour, category and brand, in the draw order that
    :func:`generate_shop` has always used (so that its output stays the same, and
    :func:`launch_products` can replay it to find the same brands)."""
    style = rng.integers(0, len(styles), size=n)
    colour = _sample_rows(rng, world["style_colours"][style])
    category = _sample_rows(rng, world["style_categories"][style])
    names = _brand_names(rng, len(styles) * BRANDS_PER_STYLE)
    brand = style * BRANDS_PER_STYLE + rng.integers(0, BRANDS_PER_STYLE, size=n)
    price_level = rng.lognormal(mean=3.4, sigma=0.5, size=len(names))
    return style, colour, category, brand, _Brands(np.asarray(names), price_level)


def _prices(rng: np.random.Generator, brands: _Brands, brand: np.ndarray) -> np.ndarray:
    return np.round(brands.price_level[brand] * rng.lognormal(0.0, 0.3, size=len(brand)), 2)


def _latent(rng: np.random.Generator, config: ShopConfig, world: dict[str, np.ndarray], style: np.ndarray,
            colour: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Products' latent vectors: style + colour + category (all visible in their content) + an own part."""
    return (
        1.0 * world["style"][style]
        + 0.5 * world["colour"][colour]
        + 0.5 * world["category"][category]
        + 0.6 * rng.normal(size=(len(style), config.latent_dim)) / np.sqrt(config.latent_dim)
    )


def _frame(ids: list[str], titles: list[str], descriptions: list[str], category: np.ndarray, colour: np.ndarray,
           brand_names: np.ndarray, price: np.ndarray, launch: pd.DatetimeIndex) -> pd.DataFrame:
    """Catalogue rows in the canonical schema."""
    return pd.DataFrame(
        {
            "product_id": ids,
            "title": titles,
            "description": descriptions,
            "category": np.asarray(_CATEGORIES)[category],
            "colour": np.asarray(_COLOURS)[colour],
            "brand": brand_names,
            "price": price,
            "launch_date": launch,
        }
    )


def launch_products(config: ShopConfig, count: int, batch: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``count`` new products of the shop ``config`` generates, launched as ``batch`` (1, 2, ...): their catalogue
    rows (the canonical schema, ids :func:`launched_product_id`, which no generated shop uses) and their latent
    vectors (float32 ``(count, latent_dim)``, comparable with :attr:`SyntheticShop.product_latent`).

    They live in the shop's own latent world and are drawn as its products are: a style, then a colour and a
    category by that style's leanings, a brand of the style at its price level, the latent from all of these
    plus an own part, and texts from the style's words; so their content predicts their latent, as it does
    for the shop's products. Identical for identical (``config``, ``count``, ``batch``); launched on the
    ``batch``-th day after the generated log ends (``launch_date``)."""
    if count < 0 or batch < 1:
        raise ValueError(f"count must be >= 0 and batch >= 1, got count={count}, batch={batch}")
    rng = np.random.default_rng(config.seed)  # the shop's world and brands, drawn again as generate_shop draws them
    styles = list(_STYLES)[: config.num_styles]
    world = _latent_world(rng, config, len(styles))
    *_, brands = _lines(rng, config.num_products, styles, world)
    rng = np.random.default_rng((config.seed, LAUNCH_STREAM, batch))  # the launch's own draws
    style = rng.integers(0, len(styles), size=count)
    colour = _sample_rows(rng, world["style_colours"][style])
    category = _sample_rows(rng, world["style_categories"][style])
    brand = style * BRANDS_PER_STYLE + rng.integers(0, BRANDS_PER_STYLE, size=count)
    price = _prices(rng, brands, brand)
    latent = _latent(rng, config, world, style, colour, category)
    titles, descriptions = _texts(rng, styles, style, colour, category, brands.names, brand)
    day = pd.Timestamp(config.start_date, tz="UTC") + pd.Timedelta(days=config.num_weeks * 7 + batch - 1)
    catalogue = _frame([launched_product_id(batch, i) for i in range(count)], titles, descriptions, category, colour,
                       brands.names[brand], price, pd.DatetimeIndex([day] * count))
    return catalogue, latent.astype(np.float32)


def launched_product_id(batch: int, index: int) -> str:
    """The id of launch ``batch``'s product ``index`` (``N00001-00000``: no generated shop's ``P`` id)."""
    return f"{LAUNCHED_PREFIX}{batch:05d}-{index:05d}"


def launch_batch(product_id: str) -> int | None:
    """The launch batch of a :func:`launched_product_id`, None for any other id."""
    match = _LAUNCHED_ID.fullmatch(product_id)
    return int(match.group(1)) if match else None


def _launch_dates(rng: np.random.Generator, config: ShopConfig) -> pd.DatetimeIndex:
    start = pd.Timestamp(config.start_date, tz="UTC")
    n = config.num_products
    initial = rng.random(n) < config.initial_catalogue_fraction
    days = np.where(
        initial,
        -rng.integers(1, 120, size=n),  # the catalogue that already existed
        rng.integers(0, config.num_weeks * 7, size=n),  # launched during the log, week by week
    )
    return start + pd.to_timedelta(days, unit="D")


def _brand_names(rng: np.random.Generator, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        parts = rng.choice(_BRAND_SYLLABLES, size=rng.integers(2, 4))
        names.add("".join(parts).capitalize())
    return sorted(names)


def _texts(
    rng: np.random.Generator,
    styles: list[str],
    style: np.ndarray,
    colour: np.ndarray,
    category: np.ndarray,
    brand_names: list[str],
    brand: np.ndarray,
) -> tuple[list[str], list[str]]:
    titles, descriptions = [], []
    for s, c, k, b in zip(style, colour, category, brand, strict=True):
        words = _STYLES[styles[s]]
        picked = rng.choice(words, size=4, replace=False)
        noise = rng.choice(_GENERIC_WORDS, size=4, replace=False)
        if rng.random() < 0.2:  # some products describe themselves with another style's words
            picked[:2] = rng.choice(_STYLES[styles[rng.integers(len(styles))]], size=2, replace=False)
        titles.append(f"{brand_names[b]} {picked[0]} {_COLOURS[c]} {_CATEGORIES[k]}")
        descriptions.append(
            f"A {picked[1]} {_CATEGORIES[k]} in {_COLOURS[c]}, {picked[2]} and {picked[3]}. "
            f"{noise[0].capitalize()} {noise[1]} {noise[2]} {noise[3]}."
        )
    return titles, descriptions


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a row-stochastic matrix."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(probabilities), 1)) * cumulative[:, -1:]
    return (draws > cumulative).sum(axis=1)


def _customer_tastes(rng: np.random.Generator, config: ShopConfig,
                     world: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Unit taste vectors, and each customer's dominant style (``first``: its mix weight is at least 0.5)."""
    m = config.num_customers
    num_styles = len(world["style"])
    first = rng.integers(0, num_styles, size=m)
    second = rng.integers(0, num_styles, size=m)
    mix = np.where(rng.random(m) < 0.5, 1.0, rng.uniform(0.5, 0.8, size=m))[:, None]
    taste = mix * world["style"][first] + (1 - mix) * world["style"][second]
    taste += 0.4 * world["colour"][rng.integers(0, len(_COLOURS), size=m)]
    taste += 0.4 * world["category"][rng.integers(0, len(_CATEGORIES), size=m)]
    taste += 0.3 * rng.normal(size=taste.shape) / np.sqrt(config.latent_dim)
    return (taste / np.linalg.norm(taste, axis=1, keepdims=True)).astype(np.float32), first


def _events(
    rng: np.random.Generator,
    config: ShopConfig,
    taste: np.ndarray,
    catalogue: pd.DataFrame,
    product_latent: np.ndarray,
    log_popularity: np.ndarray,
    regions: np.ndarray | None = None,
    context_rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    start = pd.Timestamp(config.start_date, tz="UTC")
    seconds_total = config.num_weeks * 7 * 86_400
    per_customer = rng.poisson(rng.lognormal(np.log(config.events_per_customer) - 0.32, 0.8, config.num_customers))
    per_customer = np.maximum(per_customer, 2)
    session_size = 4
    sessions_per_customer = np.ceil(per_customer / session_size).astype(int)
    session_customer = np.repeat(np.arange(config.num_customers), sessions_per_customer)
    session_seconds = rng.integers(0, seconds_total, size=len(session_customer))
    launch_day = ((catalogue["launch_date"] - start).dt.total_seconds().to_numpy() // 86_400).astype(int)
    session_day = session_seconds // 86_400
    context = _SessionContext.draw(context_rng, regions, session_customer, session_seconds, catalogue,
                                   config.context_strength) if regions is not None else None
    days = [(day, np.flatnonzero(session_day == day)) for day in np.unique(session_day)]
    events = _raced_days(rng, config, days, taste, session_customer, session_seconds, launch_day, product_latent,
                         log_popularity, session_size, context)
    if context is not None:
        events = context.annotated(events, start)
    return _canonical_events(events, start, catalogue["product_id"].to_numpy(), config.num_customers,
                             ["device", "region", "local_time"] if context is not None else [])


def _raced_days(rng: np.random.Generator, config: ShopConfig, days: list[tuple[int, np.ndarray]], taste: np.ndarray,
                session_customer: np.ndarray, session_seconds: np.ndarray, launch_day: np.ndarray,
                product_latent: np.ndarray, log_popularity: np.ndarray, session_size: int,
                context: _SessionContext | None) -> pd.DataFrame:
    """The log, day by day (``days``: each day and its sessions), in race order: integer columns ``customer``,
    ``product`` (catalogue row), ``event`` (index into ``_EVENT_NAMES``) and ``second`` (since the start), and
    ``session`` with context. Products launched by a day are the ones its sessions see."""
    from threadpoolctl import threadpool_limits

    columns: list[dict[str, np.ndarray]] = []
    with threadpool_limits(RACE_BLAS_THREADS, "blas"):
        for day, todays in days:
            available = int(np.searchsorted(launch_day, day, side="right"))  # catalogue is in launch order
            age_weeks = (day - launch_day[:available]) / 7.0
            item_bias = config.popularity_strength * log_popularity[:available] + 0.8 * np.exp(-age_weeks / 2.0)
            columns.append(
                _session_events(rng, config, taste[session_customer[todays]], session_customer[todays],
                                session_seconds[todays], product_latent[:available], item_bias, session_size,
                                context, todays)
            )
    return pd.DataFrame({name: np.concatenate([day[name] for day in columns]) for name in columns[0]})


def _canonical_events(events: pd.DataFrame, start: pd.Timestamp, product_ids: np.ndarray, num_customers: int,
                      context_columns: list[str]) -> pd.DataFrame:
    """``events`` (:func:`_raced_days`' columns, and ``context_columns``) in the canonical schema, sorted by
    (timestamp, customer_id), ties in their order in ``events``.

    This is the frame that sorting the canonical columns with ``sort_values(["timestamp", "customer_id"],
    kind="stable")`` gives (that is a stable lexicographic sort too), sorted on integers instead (a timestamp is
    start + second; a customer id's rank among all ids), and with its string columns made once, in their final
    order, from each id's one string."""
    customer_ids = np.array([f"C{i:06d}" for i in range(num_customers)], dtype=object)
    rank = np.empty(num_customers, dtype=np.int64)
    rank[np.argsort(customer_ids)] = np.arange(num_customers)  # the ids' lexicographic order
    customer = events["customer"].to_numpy()
    second = events["second"].to_numpy()
    order = np.lexsort((rank[customer], second))
    frame = {
        "customer_id": customer_ids[customer[order]],
        "product_id": product_ids[events["product"].to_numpy()[order]],
        "event_type": np.asarray(_EVENT_NAMES, dtype=object)[events["event"].to_numpy()[order]],
        "timestamp": start + pd.to_timedelta(pd.Series(second[order]), unit="s"),
    }
    frame.update({name: events[name].array.take(order) for name in context_columns})
    return pd.DataFrame(frame)


@dataclass(frozen=True)
class _SessionContext:
    """Each session's device, region and local hour, and the logits they add (``context_bonus``)."""

    devices: np.ndarray  # (sessions,) index into DEVICES
    regions: np.ndarray  # (sessions,) index into REGIONS
    local_hours: np.ndarray  # (sessions,)
    offsets_s: np.ndarray  # (sessions,) the region's UTC offset
    lounge: np.ndarray  # (products,) bool
    favoured: np.ndarray  # (regions, products) bool
    strength: float

    @classmethod
    def draw(cls, rng: np.random.Generator, regions: np.ndarray, session_customer: np.ndarray,
             session_seconds: np.ndarray, catalogue: pd.DataFrame, strength: float) -> _SessionContext:
        names = list(REGIONS)
        session_regions = regions[session_customer]
        offsets_s = np.array([REGIONS[name][0] * 3_600 for name in names])[session_regions]
        devices = rng.choice(len(DEVICES), size=len(session_customer), p=list(DEVICES.values()))
        hours = ((session_seconds + offsets_s) // 3_600) % 24
        favoured = np.stack([catalogue["colour"].isin(REGIONS[name][1]).to_numpy() for name in names])
        return cls(devices, session_regions, hours, offsets_s, catalogue["category"].isin(LOUNGEWEAR).to_numpy(),
                   favoured, strength)

    def bonus(self, sessions: np.ndarray, available: int) -> np.ndarray:
        evening = np.isin(self.local_hours[sessions], list(EVENING_HOURS))
        return (self.strength * (evening[:, None] & self.lounge[None, :available])
                + self.strength * self.favoured[self.regions[sessions], :available]).astype(np.float32)

    def rows_bonus(self, sessions: np.ndarray, available: int) -> Callable[[slice], np.ndarray]:
        """``rows`` -> :meth:`bonus` of ``sessions[rows]``: a day's bonus, a chunk of its sessions at a time."""
        return lambda rows: self.bonus(sessions[rows], available)

    def bonus_at(self, sessions: np.ndarray) -> Callable[[slice, np.ndarray], np.ndarray]:
        """``(rows, products)`` -> the logits the context adds for ``sessions[rows]`` at ``products``, one row of
        product rows per session: :meth:`bonus`, at the pooled race's candidates only."""
        def at(rows: slice, products: np.ndarray) -> np.ndarray:
            chunk = sessions[rows]
            evening = np.isin(self.local_hours[chunk], list(EVENING_HOURS))
            return (self.strength * (evening[:, None] & self.lounge[products])
                    + self.strength * self.favoured[self.regions[chunk][:, None], products])
        return at

    def annotated(self, events: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
        """The events with their session's context; a mobile session loses its last event."""
        session = events.pop("session").to_numpy()
        events["device"] = np.asarray(list(DEVICES))[self.devices[session]]
        events["region"] = np.asarray(list(REGIONS))[self.regions[session]]
        wall = start.tz_localize(None) + pd.to_timedelta(events["second"] + self.offsets_s[session], unit="s")
        events["local_time"] = wall.dt.strftime("%Y-%m-%dT%H:%M:%S")
        events = events.reset_index(drop=True)
        last = events.groupby(session, sort=False)["second"].idxmax()  # each session's last event (one row)
        dropped = last[self.devices[last.index.to_numpy()] == list(DEVICES).index(SHORTER_ON)].to_numpy()
        return events.drop(index=dropped).reset_index(drop=True)


def _session_events(
    rng: np.random.Generator,
    config: ShopConfig,
    taste: np.ndarray,
    customers: np.ndarray,
    seconds: np.ndarray,
    product_latent: np.ndarray,
    item_bias: np.ndarray,
    session_size: int,
    context: _SessionContext | None = None,
    sessions: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One day's events, in :func:`_raced_days`' columns: each session (a row of ``taste``, ``customers`` and
    ``seconds``; ``sessions`` are their indices in the log, which ``context`` needs) picks ``session_size`` distinct
    launched products (:func:`_race`; :func:`_pooled_race` when ``ShopConfig.race_candidates`` is below the
    launched count), then gets their event types and their seconds into the session.

    The draws keep the order they have always had: all the day's exponential races, then its event types, then
    its offsets."""
    rows_bonus = bonus_at = None  # the sessions' context (ShopConfig.context_strength), if any, adds logits
    if context is not None and sessions is not None:
        rows_bonus, bonus_at = context.rows_bonus(sessions, len(product_latent)), context.bonus_at(sessions)
    if 0 < config.race_candidates < len(product_latent):
        picks, picked_affinity = _pooled_race(rng, config.taste_sharpness, taste, product_latent, item_bias,
                                              session_size, config.race_candidates, bonus_at)
    else:
        picks, picked_affinity = _race(rng, config.taste_sharpness, taste, product_latent,
                                       item_bias.astype(np.float32), session_size, rows_bonus)
    event_type = _event_types(rng, picked_affinity)
    offsets = np.sort(rng.integers(0, 1_800, size=picks.shape), axis=1)
    columns = {
        "customer": np.repeat(customers, session_size),
        "product": picks.ravel(),
        "event": event_type.ravel(),
        "second": (seconds[:, None] + offsets).ravel(),
    }
    if rows_bonus is not None:
        columns["session"] = np.repeat(sessions, session_size)
    return columns


def _race(rng: np.random.Generator, sharpness: float, taste: np.ndarray, product_latent: np.ndarray,
          item_bias: np.ndarray, session_size: int, bonus: Callable[[slice], np.ndarray] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Each session's (row of ``taste``) ``session_size`` picks among ``product_latent``'s products, in the order
    that racing the whole day at once gives, and their affinity: ``(sessions, session_size)`` arrays.

    The rows race in chunks (:func:`_row_chunks`, at most ``EVENT_CHUNK_CELLS`` cells): the output is the same as
    one race of all rows, since the chunks' exponential draws follow each other in the stream exactly as one
    draw of all of them does, and the affinity, the logits and the picks of a row depend on that row alone.
    ``bonus(rows)``, if given, is the chunk's extra logits (the context)."""
    picks, affinities = [], []
    for rows in _row_chunks(len(taste), len(product_latent), EVENT_CHUNK_CELLS):
        chunk_picks, chunk_affinity = _race_chunk(rng, sharpness, taste[rows], product_latent, item_bias,
                                                  session_size, None if bonus is None else bonus(rows))
        picks.append(chunk_picks)
        affinities.append(chunk_affinity)
    return np.concatenate(picks), np.concatenate(affinities)


def _row_chunks(rows: int, columns: int, max_cells: int) -> list[slice]:
    """Consecutive slices that cover ``range(rows)``: as few as keep each within ``max_cells`` cells of ``columns``
    (though 2 * ``MIN_CHUNK_ROWS`` rows are allowed whatever the budget), and as even as can be (their sizes differ
    by one at most). So none has fewer than half the rows allowed, nor fewer than ``MIN_CHUNK_ROWS``, unless
    ``rows`` has."""
    allowed = max(2 * MIN_CHUNK_ROWS, max_cells // max(columns, 1))
    count = -(-rows // allowed)  # ceil
    bounds = [rows * i // count for i in range(count + 1)]
    return [slice(start, stop) for start, stop in pairwise(bounds)]


def _race_chunk(rng: np.random.Generator, sharpness: float, taste: np.ndarray, product_latent: np.ndarray,
                item_bias: np.ndarray, session_size: int, bonus: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-top-k over logits, as exponential races: argmax(logit + Gumbel) == argmin(Exp(1) * exp(-logit)).

    The arithmetic is the one the generator has always done (same operations, operands and dtypes; in place where
    that leaves the values as they were), so that its output stays the same."""
    affinity = taste @ product_latent.T
    logits = sharpness * affinity + item_bias
    if bonus is not None:
        logits += bonus
    draws = rng.standard_exponential(size=logits.shape, dtype=np.float32)
    weights = np.exp(np.negative(logits, out=logits), out=logits)  # exp(-logits)
    race = np.multiply(draws, weights, out=weights)
    del draws
    picks = np.argpartition(race, session_size, axis=1)[:, :session_size].copy()  # not a view of the whole index
    return picks, np.take_along_axis(affinity, picks, axis=1)


def _pooled_race(rng: np.random.Generator, sharpness: float, taste: np.ndarray, product_latent: np.ndarray,
                 item_bias: np.ndarray, session_size: int, candidates: int,
                 bonus: Callable[[slice, np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_race`'s picks and their affinity, each session racing ``candidates`` products drawn for it instead
    of every product (``ShopConfig.race_candidates``): the cost grows with the sessions, not with sessions x
    products.

    Sampling-importance-resampling: the candidates are drawn with replacement from :func:`candidate_law` q, and
    each copy races with its logit minus log q. A product drawn twice races with both copies' rates summed (the
    earlier of its two finishing times), so the picks are distinct products, drawn without replacement with
    chances proportional to exp(logit) * copies / q, whose expectation is proportional to exp(logit): the exact
    race's law, which the picks approach as ``candidates`` grows. ``bonus(rows, products)``, if given, is the
    chunk's extra logits at its candidates (the context)."""
    from scipy.stats.sampling import DiscreteAliasUrn

    law = candidate_law(item_bias)
    urn = DiscreteAliasUrn(law, random_state=rng)  # Walker's alias table: a draw costs the same at any catalogue size
    log_law = np.log(law)
    picks, affinities = [], []
    for rows in _row_chunks(len(taste), candidates * product_latent.shape[1], EVENT_CHUNK_CELLS):
        drawn = urn.rvs(size=(rows.stop - rows.start, candidates)).astype(np.int64)
        affinity = np.matmul(np.take(product_latent, drawn, axis=0), taste[rows][:, :, None])[..., 0]
        logits = sharpness * affinity.astype(np.float64) + item_bias[drawn] - log_law[drawn]
        if bonus is not None:
            logits += bonus(rows, drawn)
        race = rng.standard_exponential(size=logits.shape) * np.exp(-logits)
        chosen = _first_distinct(drawn, race, session_size)
        picks.append(np.take_along_axis(drawn, chosen, axis=1))
        affinities.append(np.take_along_axis(affinity, chosen, axis=1))
    return np.concatenate(picks), np.concatenate(affinities)


def candidate_law(item_bias: np.ndarray) -> np.ndarray:
    """The pooled race's candidate draw, over the launched products: half by exp(item_bias) (popularity and
    novelty, the race's own bias), half uniform, so that every product can be drawn whatever its bias."""
    popular = np.exp(item_bias - item_bias.max())
    return 0.5 * popular / popular.sum() + 0.5 / len(item_bias)


def _first_distinct(drawn: np.ndarray, race: np.ndarray, count: int) -> np.ndarray:
    """Per row, the columns of the ``count`` earliest finishers of ``race`` that are distinct products of
    ``drawn`` (each product's earliest copy), in finishing order. The earliest ``DISTINCT_SEARCH`` x ``count``
    are searched first; a row with fewer distinct products among them is sorted whole."""
    width = min(race.shape[1], DISTINCT_SEARCH * count)
    if width < race.shape[1]:
        early = np.argpartition(race, width - 1, axis=1)[:, :width]
    else:
        early = np.tile(np.arange(width), (len(race), 1))
    early = np.take_along_axis(early, np.argsort(np.take_along_axis(race, early, axis=1), axis=1), axis=1)
    chosen, found = _distinct_prefix(np.take_along_axis(drawn, early, axis=1), count)
    result = np.take_along_axis(early, chosen, axis=1)
    short = np.flatnonzero(~found)
    if len(short):
        order = np.argsort(race[short], axis=1)
        chosen, found = _distinct_prefix(np.take_along_axis(drawn[short], order, axis=1), count)
        if not found.all():
            raise ValueError(f"a session drew fewer than {count} distinct products among its candidates: raise "
                             "shop.race_candidates")
        result[short] = np.take_along_axis(order, chosen, axis=1)
    return result


def _distinct_prefix(products: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``products`` (in finishing order): the positions of the first ``count`` products not seen
    earlier in the row, and whether the row has that many (where not, its positions are meaningless)."""
    by_product = np.argsort(products, axis=1, kind="stable")  # equal products side by side, in finishing order
    grouped = np.take_along_axis(products, by_product, axis=1)
    repeat_grouped = np.zeros(products.shape, bool)
    repeat_grouped[:, 1:] = grouped[:, 1:] == grouped[:, :-1]
    repeat = np.empty_like(repeat_grouped)
    np.put_along_axis(repeat, by_product, repeat_grouped, axis=1)
    first = np.argsort(repeat, axis=1, kind="stable")[:, :count]  # the new products first, in finishing order
    return first, (~repeat).sum(axis=1) >= count


def _event_types(rng: np.random.Generator, affinity: np.ndarray) -> np.ndarray:
    """Stronger affinity makes bagging, saving and buying likelier than a plain click; each event's type as an
    index into ``_EVENT_NAMES`` (int8: the log keeps a byte an event until it is written out as names)."""
    keen = 1.0 / (1.0 + np.exp(-4.0 * (affinity - 0.5)))
    u = rng.random(affinity.shape)
    purchase = u < 0.10 * keen
    bag = (~purchase) & (u < 0.25 * keen)
    save = (~purchase) & (~bag) & (u < 0.35 * keen)
    kinds = np.full(affinity.shape, _EVENT_NAMES.index(EVENT_TYPES[0]), dtype=np.int8)
    kinds[bag] = _EVENT_NAMES.index("add_to_bag")
    kinds[save] = _EVENT_NAMES.index("save_for_later")
    kinds[purchase] = _EVENT_NAMES.index("purchase")
    return kinds


def write_shop(shop: SyntheticShop, directory: str) -> dict[str, str]:
    """Write the shop as the canonical CSV input files (local or gs://); returns their paths by role."""
    paths = {role: storage.join(directory, f"{role}.csv") for role in ("catalogue", "events")}
    for role, frame in (("catalogue", shop.catalogue), ("events", shop.events)):
        with storage.open_output(paths[role]) as stream:
            stream.write(frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ").encode("utf-8"))
    return paths
