"""Sources of MediaRecords, all lazy with bounded memory.

- :mod:`gbif_dl.sources.search`: the occurrence search API (``gbif_dl.api.generate_urls``).
- :mod:`gbif_dl.sources.archive`: Darwin Core Archives (``gbif_dl.dwca.generate_urls``).
- :mod:`gbif_dl.sources.urls`: URL lists (.txt, .csv, .parquet).
"""
