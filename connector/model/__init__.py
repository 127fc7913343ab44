"""The terms model as pure code: documents and counts in, outliers out.

Nothing in this package does I/O or imports Elasticsearch, Flask, ``os`` or a source: the
engine feeds it, so both the NDJSON path and the Elasticsearch path share one decision.
"""
