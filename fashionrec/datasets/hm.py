"""H&M Personalized Fashion Recommendations (Kaggle layout) as canonical input.

``data_dir`` holds ``transactions_train.csv`` (``t_dat, customer_id, article_id, price,
sales_channel_id``) and ``articles.csv`` (Kaggle's columns); ``customers.csv`` is not needed. Every
transaction is a ``purchase``. Identical rows (same customer, article and day) are legitimate repeat
purchases, not duplicates: they become one event whose ``weight`` is the count times the purchase
weight. Article ids are zero-padded to Kaggle's 10 digits (they lose the leading 0 when a CSV is read
as numbers). Catalogue: title = ``prod_name``, description = ``detail_desc``, category =
``product_type_name``, colour = ``colour_group_name``, brand = ``department_name`` (H&M has no
brands), price = the article's median transaction price. ``sales_channel_id`` becomes the event's
``channel`` context (1 store, 2 online). Files are read as text so that malformed
rows reach ``ingest``'s quarantine instead of failing here.
"""

from __future__ import annotations

import pandas as pd

from fashionrec import storage
from fashionrec.config import EventWeights
from fashionrec.datasets import RawData

TRANSACTIONS_FILE = "transactions_train.csv"
ARTICLES_FILE = "articles.csv"
ARTICLE_ID_DIGITS = 10
SALES_CHANNELS = {"1": "store", "2": "online"}  # sales_channel_id -> the canonical channel


def prepare(data_dir: str, output_dir: str, weights: EventWeights = EventWeights()) -> RawData:
    """Write canonical ``catalogue.parquet`` and ``events.parquet`` into ``output_dir``."""
    transactions = storage.read_table(storage.join(data_dir, TRANSACTIONS_FILE))
    articles = storage.read_table(storage.join(data_dir, ARTICLES_FILE))
    raw = RawData(storage.join(output_dir, "catalogue.parquet"), storage.join(output_dir, "events.parquet"))
    storage.write_parquet(catalogue(articles, transactions), raw.catalogue_uri)
    purchases = events(transactions, weights)
    storage.write_parquet(purchases, raw.events_uri)
    print(f"... H&M: {len(transactions)} transactions -> {len(purchases)} purchase events "
          f"({len(transactions) - len(purchases)} repeat purchases folded into weights)", flush=True)
    return raw


def article_ids(values: pd.Series) -> pd.Series:
    """Kaggle's 10-digit article ids, restoring leading zeros; anything non-numeric is kept as given."""
    text = values.astype("string").str.strip()
    return text.where(~text.str.fullmatch(r"\d+").fillna(False), text.str.zfill(ARTICLE_ID_DIGITS))


def catalogue(articles: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    ids = article_ids(articles["article_id"])
    price = pd.to_numeric(transactions["price"], errors="coerce").groupby(article_ids(transactions["article_id"])).median()
    return pd.DataFrame(
        {
            "product_id": ids,
            "title": articles["prod_name"],
            "description": articles["detail_desc"].fillna(""),
            "category": articles["product_type_name"],
            "colour": articles["colour_group_name"],
            "brand": articles["department_name"],
            "price": ids.map(price).astype("float64").fillna(0.0),
        }
    )


def events(transactions: pd.DataFrame, weights: EventWeights = EventWeights()) -> pd.DataFrame:
    """One purchase event per (customer, article, day, channel); repeats add up in the weight."""
    frame = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"],
            "product_id": article_ids(transactions["article_id"]),
            "timestamp": transactions["t_dat"],
        }
    )
    columns = ["customer_id", "product_id", "event_type", "timestamp", "weight"]
    if "sales_channel_id" in transactions:
        frame["channel"] = channels(transactions["sales_channel_id"])
        columns.append("channel")
    counted = frame.groupby(list(frame.columns), dropna=False, sort=False).size().rename("count").reset_index()
    counted["event_type"] = "purchase"
    counted["weight"] = (counted.pop("count") * weights.purchase).astype("float64")
    return counted[columns]


def channels(sales_channel_ids: pd.Series) -> pd.Series:
    """Kaggle's ``sales_channel_id`` as the canonical ``channel``: 1 a store, 2 online (the competition's
    data description leaves them unnamed; this is the reading its forum settled on). Blank stays unknown;
    any other value passes through unchanged, so ingest quarantines it as ``bad_channel``."""
    text = sales_channel_ids.astype("string").str.strip().astype(object)
    return text.map(lambda value: SALES_CHANNELS.get(value, value) if isinstance(value, str) and value else None)
