"""Reliability tests: fault matrix, fuzzing, hostile archives (see RELIABILITY.md).

Hypothesis runs a bounded, derandomized number of examples without an example database, so CI
is reproducible; ``GBIF_DL_FUZZ_SCALE`` multiplies every fuzz test's example count (e.g. 10 for
a long local hunt).
"""
