"""One photo, stored once and in one split: content hashes, near duplicates, placeholders.

    gbif_dl.dedupe.phash   the 64-bit dHash (Pillow + numpy, draft decode), Hamming distance
    gbif_dl.dedupe.keys    compact sorted key maps; multi-index hashing for near neighbours
    gbif_dl.dedupe.policy  ContentPolicy: the options (distance, drop, placeholders)
    gbif_dl.dedupe.index   ContentIndex: what is stored, by content (exact and near), threads
    gbif_dl.dedupe.store   store_unique: hash, decide, write (in the run's store thread)
    gbif_dl.dedupe.settle  settle_content: the end-of-run pass (splits, copies, placeholders)

The manifest carries the results: ``sha256``, ``phash`` and ``duplicate_of`` columns, and the
statuses ``duplicate``, ``near_duplicate`` and ``placeholder`` (failed for good: a rerun does
not request them again).
"""
