"""The names of every stage's outputs: the files and folders one stage writes and later ones read.

Why one module: a stage that reads another's output should not import that stage (and with it Apache
Beam or TensorFlow) for a folder name. Each stage writes under its own output folder (a KFP artifact's
path, or a local / ``gs://`` folder), and the names below are relative to it. The Triton version folder's
own names are the serving contract's (:mod:`fashionrec.contract.ops`).
"""

from __future__ import annotations

# ingest → the ingested folder
CATALOGUE_FILE = "catalogue.parquet"
TRAIN_EVENTS_FILE = "events_train.parquet"
HOLDOUT_EVENTS_FILE = "events_holdout.parquet"
QUARANTINE_FILE = "quarantine.parquet"
INGEST_SUMMARY_FILE = "summary.json"
EXAMINATION_COLUMN = "examination"  # the events' optional P(the product was looked at where it was shown)

# transform (Beam + tensorflow-transform) → the transformed folder
TRANSFORMED_CATALOGUE_DIR = "transformed_catalogue"
TRANSFORM_FN_DIR = "transform_fn"
TRAIN_EXAMPLES_DIR = "train_examples"
EVAL_EXAMPLES_DIR = "eval_examples"
CUSTOMER_SEQUENCES_DIR = "customer_sequences"  # each customer's training events (train.objective=future_set)
PRODUCT_VOCAB = "product_id"  # the product-id vocabulary's name inside transform_fn
CONTEXT_VOCABULARY_FILE = "context_vocabulary.json"  # the context features' known values (fashionrec.stages.context)

# train → the model folder
CHECKPOINT_PREFIX = "item_tower"
TRAIN_CONFIG_FILE = "train_config.json"
# each product row's training targets (every training event but each customer's first; for logQ and the id
# fade-in): the transform counts them beside its examples, and train saves those it used beside its checkpoint
TARGET_COUNTS_FILE = "target_counts.npy"

# export → the embeddings folder (beside it: aggregation.json, fashionrec.model.aggregation, and the content tower)
EMBEDDINGS_FILE = "embeddings.parquet"
PRIOR_COLUMN = "popularity_prior"  # its column of each product's popularity prior (fashionrec.model.popularity)

# evaluate → the evaluation folder
BLESSING_FILE = "blessing.json"
METRICS_FILE = "metrics.json"
SLICES_FILE = "slices.json"
REPORT_FILE = "report.html"
RANKED_CUSTOMERS_DIR = "ranked_customers"  # Parquet, a row per evaluated customer: top-K, metrics, per system
