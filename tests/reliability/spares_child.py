"""Run ``gbif_dl.io.download`` over quota'd records from a JSON file (the spares SIGKILL test).

Usage: python spares_child.py RECORDS.json ROOT RUNNER   (RUNNER: "none" or "local")
"""

from __future__ import annotations

import json
import sys

from gbif_dl.io import download

if __name__ == "__main__":
    records_path, root, runner = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(records_path, encoding="utf-8") as handle:
        records = json.load(handle)
    extra = {} if runner == "none" else {"runner": runner, "shard_size": 40}
    download(records, root=root, concurrency=4, per_host=4, progress=False, **extra)
