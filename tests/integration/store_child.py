"""Run ``gbif_dl.io.download`` into an object-store root (the store SIGKILL test's child).

Usage: python store_child.py RECORDS.json ROOT STORAGE_OPTIONS.json WORK_DIR SHARD_SIZE
"""

from __future__ import annotations

import json
import sys

from gbif_dl.io import download

if __name__ == "__main__":
    records_path, root, options_path, work_dir, shard_size = sys.argv[1:6]
    with open(records_path, encoding="utf-8") as handle:
        records = json.load(handle)
    with open(options_path, encoding="utf-8") as handle:
        storage_options = json.load(handle)
    download(
        records,
        root=root,
        output="webdataset",
        shard_size=int(shard_size),
        storage_options=storage_options,
        work_dir=work_dir,
        concurrency=2,
        per_host=1,
        progress=False,
    )
