"""Serving half of fashionrec."""
