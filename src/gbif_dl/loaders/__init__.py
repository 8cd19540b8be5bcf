"""gbif_dl.loaders."""
