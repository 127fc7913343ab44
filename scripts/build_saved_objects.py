#!/usr/bin/env python3
"""Regenerate kibana_saved_objects/rare-child-connector.ndjson and its version lock (versions.json).

The objects are defined in connector/kibana/saved_objects.py; edit them there, raise the ``version`` of each
object whose content changed, then run:

    python scripts/build_saved_objects.py

It refuses (exit 2, nothing written) when an object changed without its version going up.
"""

from __future__ import annotations

import sys
from pathlib import Path

from connector.kibana.saved_objects import VersionLockError, write_bundle

BUNDLE_DIRECTORY = Path(__file__).resolve().parents[1] / "kibana_saved_objects"


def main() -> int:
    try:
        written = write_bundle(BUNDLE_DIRECTORY)
    except VersionLockError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.exit_code
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
