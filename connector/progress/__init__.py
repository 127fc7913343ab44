"""Scheduled detection's progress, kept in Elasticsearch so the service stays stateless.

``spans`` plans the hourly spans a call owes (pure), ``checkpoints`` stores how far each use case and
index were analysed (with a lease and optimistic concurrency), ``summary`` keeps the per-hour counts of
analysed hours so a baseline is not recounted, and ``catch_up`` runs the owed spans one after another.
"""
