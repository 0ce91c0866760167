"""KFP v2 pipeline definitions."""
