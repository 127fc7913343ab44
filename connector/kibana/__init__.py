"""Kibana: the saved objects the project ships, the API client that installs them, and the alerting
objects (the webhook connector and hourly rule) rendered from the versioned assets.

:mod:`.client` speaks Kibana's HTTP API (standard library only); :mod:`.saved_objects` builds the bundle
as data; :mod:`.alerting` renders the connector and rule. Nothing here parses command-line options:
that is :mod:`connector.cli`.
"""
