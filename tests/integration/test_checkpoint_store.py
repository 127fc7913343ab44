"""The checkpoint store on the real node: listing pages through every checkpoint, in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from connector.progress.checkpoints import CheckpointStore

NOW = datetime(2024, 3, 6, 12, tzinfo=UTC)


def test_listing_pages_through_every_checkpoint_by_use_case_and_index(es_client):
    index = f"rcp-checkpoints-{uuid.uuid4().hex}"
    store = CheckpointStore(es_client, index, page_size=2)
    try:
        wanted = [(f"use_case_{n % 3}", f"events-{n}") for n in range(7)]  # 7: three full pages and one
        for use_case, events in wanted:
            taken = store.acquire(use_case, events, holder="test", now=NOW, lease=timedelta(minutes=5))
            store.release(store.advance(taken, to=NOW, now=NOW), now=NOW)
        before = store.requests
        listed = store.all()
        assert [(checkpoint.use_case, checkpoint.index) for checkpoint in listed] == sorted(wanted)
        assert all(checkpoint.analysed_to == NOW for checkpoint in listed)
        assert store.requests - before == 4 + 4  # 4 pages of 2 found them, 4 multi-gets of 2 read them
    finally:
        es_client.options(ignore_status=404).indices.delete(index=index)
