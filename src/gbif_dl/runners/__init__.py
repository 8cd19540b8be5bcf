"""gbif_dl.runners."""
