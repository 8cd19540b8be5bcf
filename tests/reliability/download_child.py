"""Run ``gbif_dl.io.download`` over records from a JSON file (the SIGKILL test's child).

Usage: python download_child.py RECORDS.json ROOT CONCURRENCY
"""

from __future__ import annotations

import json
import sys

from gbif_dl.io import download

if __name__ == "__main__":
    records_path, root, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(records_path, encoding="utf-8") as handle:
        records = json.load(handle)
    download(records, root=root, concurrency=concurrency, per_host=concurrency, progress=False)
