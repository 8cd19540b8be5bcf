"""Sampling that works on any source: stream quotas, media filters, splits.

- :mod:`gbif_dl.sampling.balance`: ``allocate`` and ``StreamBalancer`` (balanced, weighted,
  capped, ``-1``; a dry stream hands its quota on).
- :mod:`gbif_dl.sampling.filters`: ``media_items``, ``pick_media``, ``LicenseFilter``,
  ``UrlDeduper``.
- :mod:`gbif_dl.sampling.splits`: deterministic train/test assignment.
- :mod:`gbif_dl.sampling.spares`: the seeded spares behind each stream's quota;
  ``with_spares(items)`` gives a sampling generator's sample and then its spares.
"""
