"""gbif_dl.sources."""
