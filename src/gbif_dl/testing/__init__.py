"""gbif_dl.testing."""
