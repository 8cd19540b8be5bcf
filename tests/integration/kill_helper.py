"""Run gbif_dl.io.download over records from a JSON file; used by the SIGKILL test.

Usage: python kill_helper.py RECORDS.json ROOT
"""

from __future__ import annotations

import json
import sys

from gbif_dl.io import download

if __name__ == "__main__":
    records_path, root = sys.argv[1], sys.argv[2]
    with open(records_path, encoding="utf-8") as handle:
        records = json.load(handle)
    download(records, root=root, concurrency=4, progress=False)
