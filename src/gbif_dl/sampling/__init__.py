"""gbif_dl.sampling."""
