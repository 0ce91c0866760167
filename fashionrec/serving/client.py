"""Kept for existing imports: the client now lives in :mod:`fashionrec.client` (every touchpoint)."""

from __future__ import annotations

from fashionrec.client import (  # noqa: F401 - re-exported
    FashionrecClient,
    History,
    Protocol,
    Recommendation,
    RecommendClient,
    RecommendError,
)
