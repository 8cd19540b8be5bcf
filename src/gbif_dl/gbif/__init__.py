"""gbif_dl.gbif."""
