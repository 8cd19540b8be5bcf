"""Peer runner: python-dwca-reader reading a GBIF DwC-A the way gbif-dl 0.1.1 did.

gbif-dl 0.1.1 (``gbif_dl.generators.dwca.dwca_generator``) opened the archive with
``DwCAReader``, iterated the core rows and, per row, its ``extensions``, keeping Multimedia rows
whose ``dc:type`` is the media type, then picked one at random per occurrence and built an item
with url, sha1 basename, label and licence. This runner does exactly that, except that it skips
occurrences without an image instead of crashing on ``random.choice([])`` as 0.1.1 did.
Spec: ``path``, ``label``, ``mediatype``.
"""

from __future__ import annotations

import hashlib
import random

import _runner_common as rc

DC = "http://purl.org/dc/terms/"
GBIF = "http://rs.gbif.org/terms/1.0/"


def main() -> None:
    spec, out = rc.load_spec()
    from dwca.read import DwCAReader

    label = spec.get("label", "speciesKey")
    mediatype = spec.get("mediatype", "StillImage")
    rng = random.Random(0)
    rows = media = 0
    with rc.Timer() as t, DwCAReader(spec["path"]) as dwca:
        for row in dwca:
            rows += 1
            images = [
                ext.data
                for ext in row.extensions
                if ext.rowtype == GBIF + "Multimedia" and ext.data.get(DC + "type") == mediatype
            ]
            if not images:
                continue
            chosen = rng.choice(images)
            url = chosen.get(DC + "identifier")
            if not url:
                continue
            item = {
                "url": url,
                "basename": hashlib.sha1(url.encode("utf-8")).hexdigest(),
                "label": str(row.data.get(GBIF + label)),
                "publisher": chosen.get(DC + "publisher"),
                "license": chosen.get(DC + "license"),
                "rightsHolder": chosen.get(DC + "rightsHolder", chosen.get(DC + "creator")),
            }
            if item["url"]:
                media += 1
    rc.write_result(out, rows=rows, count=media, elapsed_s=t.elapsed)


if __name__ == "__main__":
    main()
