"""Rare child process detection (the ee-outliers terms model) for the Elastic stack."""

__version__ = "0.1.0"
