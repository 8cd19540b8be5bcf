"""gbif_dl.fetch."""
