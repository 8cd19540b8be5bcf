"""What the download does with duplicates, near duplicates and placeholders.

:class:`ContentPolicy` is built from :class:`gbif_dl.options.DownloadOptions` (its fields
``content_hashes``, ``near_duplicate_distance``, ``drop_near_duplicates`` and
``placeholder_occurrences``) and handed to the run core and the end-of-run pass.

The default distance, :data:`DEFAULT_NEAR_DISTANCE` = 6 bits of the 64-bit dHash, measured on
the simulator's images with ``benchmarks/dedupe_threshold.py`` (2,000 distinct images, 1,999,000
pairs; 400 photos with four copies each):

========  ======================  ==========  ==========  ===============  ===============
distance  distinct pairs within   resized 50  resized 25  re-encoded q60   re-encoded q30
========  ======================  ==========  ==========  ===============  ===============
2         0                       94.0%       83.2%       97.2%            94.2%
4         1 (5.0e-7)              98.8%       96.5%       99.2%            99.2%
**6**     15 (7.5e-6)             100.0%      99.8%       99.8%            99.8%
8         44 (2.2e-5)             100.0%      100.0%      100.0%           100.0%
10        166 (8.3e-5)            100.0%      100.0%      100.0%           100.0%
========  ======================  ==========  ==========  ===============  ===============

6 keeps nearly every copy; at 7.5e-6 of pairs, a 10,000-image dataset (5e7 pairs) would link
some 375 distinct pairs on such images. The simulator's pictures are smooth random fields of a
few cells a side, coarser than photos, so this is a pessimistic bound; lower the distance for
very large datasets where a false link matters more than a missed copy.

Example:
    >>> policy = ContentPolicy()
    >>> policy.enabled, policy.near_distance, policy.drop_near, policy.placeholders
    (True, 6, False, 3)
    >>> ContentPolicy(placeholder_occurrences=0).placeholders is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from gbif_dl.errors import ConfigError

__all__ = ["DEFAULT_NEAR_DISTANCE", "DEFAULT_PLACEHOLDER_OCCURRENCES", "ContentPolicy"]

#: The largest dHash distance (bits of 64) at which two images count as one photo.
DEFAULT_NEAR_DISTANCE = 6
#: One image (exact or near) behind the URLs of this many occurrences is a placeholder.
DEFAULT_PLACEHOLDER_OCCURRENCES = 3


@dataclass(frozen=True, kw_only=True)
class ContentPolicy:
    """How stored images are compared with each other.

    Attributes:
        content_hashes: hash every stored image (sha256 + dHash) and act on duplicates (the
            policy object defaults to on; DownloadOptions and download() turn it on when the
            download has ``splits``); False stores every URL's bytes as before (and leaves
            ``phash`` empty).
        near_duplicate_distance: the largest Hamming distance between two dHashes that makes
            them one photo (0..15; 0: pixel-identical looks only).
        drop_near_duplicates: do not store a near duplicate of a stored image (status
            ``near_duplicate``); by default it is stored in its neighbour's split.
        placeholder_occurrences: one image behind the URLs of at least this many different
            occurrences is a placeholder, excluded at the end of the run; 0 keeps them.

    Example:
        >>> ContentPolicy(near_duplicate_distance=40)
        Traceback (most recent call last):
        ...
        gbif_dl.errors.ConfigError: near_duplicate_distance must be an integer in 0..15; got 40
    """

    content_hashes: bool = True
    near_duplicate_distance: int = DEFAULT_NEAR_DISTANCE
    drop_near_duplicates: bool = False
    placeholder_occurrences: int = DEFAULT_PLACEHOLDER_OCCURRENCES

    def __post_init__(self) -> None:
        distance = self.near_duplicate_distance
        if isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance < 16:
            raise ConfigError(
                f"near_duplicate_distance must be an integer in 0..15; got {distance!r}"
            )
        count = self.placeholder_occurrences
        if isinstance(count, bool) or not isinstance(count, int) or count < 0 or count == 1:
            raise ConfigError(
                "placeholder_occurrences must be 0 (keep placeholders) or an integer >= 2; "
                f"got {count!r}"
            )

    @property
    def enabled(self) -> bool:
        """True when images are hashed and compared."""
        return bool(self.content_hashes)

    @property
    def near_distance(self) -> int:
        """:attr:`near_duplicate_distance`."""
        return self.near_duplicate_distance

    @property
    def drop_near(self) -> bool:
        """:attr:`drop_near_duplicates`."""
        return self.drop_near_duplicates

    @property
    def placeholders(self) -> int | None:
        """The occurrence count that makes a placeholder, or None when they are kept."""
        return self.placeholder_occurrences or None

    @classmethod
    def off(cls) -> ContentPolicy:
        """No hashing, no comparison (gbif-dl 0.1's behaviour).

        Example:
            >>> ContentPolicy.off().enabled
            False
        """
        return cls(content_hashes=False)
