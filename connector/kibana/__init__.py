"""Kibana: the saved objects the project ships, the API client that installs them, the alerting objects
(the webhook connector and hourly rule) and the Elastic Security rule, rendered from the versioned assets.

:mod:`.client` speaks Kibana's HTTP API (standard library only); :mod:`.saved_objects` builds the bundle
as data; :mod:`.alerting` renders the connector and rule; :mod:`.security_rule` the detection rule that
turns findings into alerts. Nothing here parses command-line options: that is :mod:`connector.cli`.
"""
