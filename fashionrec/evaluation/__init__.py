"""Holdout evaluation of recommendations and the publishing gate."""
