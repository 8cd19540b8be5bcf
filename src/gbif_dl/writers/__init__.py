"""gbif_dl.writers."""
