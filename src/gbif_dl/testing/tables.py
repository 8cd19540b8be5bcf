"""The fixed vocabularies and tables a synthetic :class:`~gbif_dl.testing.population.Population`
draws from: GBIF enum names, licences, countries, the built-in species and synonyms, observer
names, record issues and the media kinds of the ``media_kind`` column.

Everything here is constant data (no logic), shared by the population, its JSON builders and
the Darwin Core Archive writer, so all of them agree on one definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ``key`` (and ``gbifID``) of record 0; record ``i`` has key ``BASE_KEY + i``.
BASE_KEY = 4_000_000_000

#: MediaType enum names in bit order of the ``mediaType`` column.
MEDIA_TYPES = ("StillImage", "MovingImage", "Sound", "InteractiveResource")

BASIS_OF_RECORD = (
    "HUMAN_OBSERVATION",
    "PRESERVED_SPECIMEN",
    "MACHINE_OBSERVATION",
    "MATERIAL_SAMPLE",
    "OBSERVATION",
    "LIVING_SPECIMEN",
    "FOSSIL_SPECIMEN",
    "LITERATURE",
    "MATERIAL_CITATION",
    "OCCURRENCE",
)
BASIS_P = (0.82, 0.12, 0.04, 0.02)

#: Record (dataset) licences: enum name and the legal-code URL GBIF puts in records.
RECORD_LICENSES = (
    ("CC_BY_NC_4_0", "http://creativecommons.org/licenses/by-nc/4.0/legalcode"),
    ("CC_BY_4_0", "http://creativecommons.org/licenses/by/4.0/legalcode"),
    ("CC0_1_0", "http://creativecommons.org/publicdomain/zero/1.0/legalcode"),
)
LICENSE_ENUM = ("CC0_1_0", "CC_BY_4_0", "CC_BY_NC_4_0", "UNSPECIFIED", "UNSUPPORTED")

#: Media licences as publishers write them (free text included), with their frequencies.
MEDIA_LICENSES: tuple[tuple[str | None, float], ...] = (
    ("http://creativecommons.org/licenses/by-nc/4.0/", 0.40),
    ("http://creativecommons.org/licenses/by/4.0/", 0.22),
    ("http://creativecommons.org/publicdomain/zero/1.0/", 0.14),
    ("http://creativecommons.org/licenses/by-sa/4.0/", 0.05),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/", 0.04),
    ("All rights reserved", 0.07),
    ("Usage Conditions Apply", 0.03),
    (None, 0.05),
)

# Countries: ISO code, GBIF country title, latitude box, longitude box, weight.
COUNTRIES: tuple[tuple[str, str, tuple[float, float], tuple[float, float], float], ...] = (
    ("US", "United States of America", (25.0, 49.0), (-124.0, -67.0), 0.35),
    ("CA", "Canada", (43.0, 60.0), (-130.0, -60.0), 0.08),
    ("DE", "Germany", (47.3, 55.0), (6.0, 15.0), 0.08),
    ("FR", "France", (43.0, 51.0), (-4.0, 8.0), 0.08),
    ("GB", "United Kingdom of Great Britain and Northern Ireland", (50.0, 58.5), (-6.0, 1.7), 0.08),
    ("NL", "Netherlands", (51.0, 53.5), (3.5, 7.0), 0.05),
    ("BR", "Brazil", (-30.0, 0.0), (-70.0, -35.0), 0.06),
    ("AU", "Australia", (-38.0, -12.0), (115.0, 153.0), 0.06),
    ("ZA", "South Africa", (-34.0, -23.0), (18.0, 32.0), 0.04),
    ("IN", "India", (8.0, 30.0), (70.0, 88.0), 0.04),
    ("JP", "Japan", (31.0, 43.0), (130.0, 145.0), 0.04),
    ("MX", "Mexico", (15.0, 30.0), (-115.0, -88.0), 0.04),
)
COUNTRY_CODES = tuple(c[0] for c in COUNTRIES)

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")

# Built-in species: (speciesKey, scientificName, kingdom, phylum, class, order, family, genus),
# each higher taxon as (key, name). Keys are in the style of the GBIF backbone.
_A, _P, _F = (1, "Animalia"), (6, "Plantae"), (5, "Fungi")
_CHORDATA, _ARTHRO, _TRACHEO, _BASIDIO = (
    (44, "Chordata"),
    (54, "Arthropoda"),
    (7707728, "Tracheophyta"),
    (34, "Basidiomycota"),
)
_AVES, _MAMMALIA, _AMPHIBIA, _INSECTA, _ARACHNIDA = (
    (212, "Aves"),
    (359, "Mammalia"),
    (131, "Amphibia"),
    (216, "Insecta"),
    (367, "Arachnida"),
)
_MAGNOLIOPSIDA, _PINOPSIDA, _AGARICOMYCETES = (
    (220, "Magnoliopsida"),
    (194, "Pinopsida"),
    (186, "Agaricomycetes"),
)
# fmt: off
SPECIES_TABLE: tuple[tuple[Any, ...], ...] = (
    (9206251, "Helianthus annuus L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (414, "Asterales"), (3065, "Asteraceae"), (3119134, "Helianthus")),
    (1427067, "Calopteryx splendens (Harris, 1780)", _A, _ARTHRO, _INSECTA,
     (789, "Odonata"), (5936, "Calopterygidae"), (1427007, "Calopteryx")),
    (5231190, "Passer domesticus (Linnaeus, 1758)", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (5264, "Passeridae"), (2492321, "Passer")),
    (2431762, "Batrachoseps luciae Jockusch, Yanev & Wake, 2001", _A, _CHORDATA, _AMPHIBIA,
     (953, "Caudata"), (6748, "Plethodontidae"), (2431747, "Batrachoseps")),
    (2878688, "Quercus robur L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (1354, "Fagales"), (4689, "Fagaceae"), (2877951, "Quercus")),
    (5219243, "Vulpes vulpes (Linnaeus, 1758)", _A, _CHORDATA, _MAMMALIA,
     (732, "Carnivora"), (9701, "Canidae"), (5219234, "Vulpes")),
    (5133088, "Danaus plexippus (Linnaeus, 1758)", _A, _ARTHRO, _INSECTA,
     (797, "Lepidoptera"), (7017, "Nymphalidae"), (5133085, "Danaus")),
    (1341976, "Apis mellifera Linnaeus, 1758", _A, _ARTHRO, _INSECTA,
     (1457, "Hymenoptera"), (4334, "Apidae"), (1334757, "Apis")),
    (5248193, "Amanita muscaria (L.) Lam.", _F, _BASIDIO, _AGARICOMYCETES,
     (1499, "Agaricales"), (4248, "Amanitaceae"), (2522956, "Amanita")),
    (2490719, "Turdus merula Linnaeus, 1758", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (5290, "Turdidae"), (2490686, "Turdus")),
    (5285637, "Pinus sylvestris L.", _P, _TRACHEO, _PINOPSIDA,
     (640, "Pinales"), (3925, "Pinaceae"), (2684241, "Pinus")),
    (2184301, "Amblyomma americanum (Linnaeus, 1758)", _A, _ARTHRO, _ARACHNIDA,
     (1425, "Ixodida"), (9167, "Ixodidae"), (7967293, "Amblyomma")),
    (4989904, "Coccinella septempunctata Linnaeus, 1758", _A, _ARTHRO, _INSECTA,
     (1470, "Coleoptera"), (7782, "Coccinellidae"), (4989885, "Coccinella")),
    (3117424, "Bellis perennis L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (414, "Asterales"), (3065, "Asteraceae"), (3117414, "Bellis")),
    (2422789, "Bufo bufo (Linnaeus, 1758)", _A, _CHORDATA, _AMPHIBIA,
     (952, "Anura"), (6727, "Bufonidae"), (2422765, "Bufo")),
    (8211070, "Sciurus vulgaris Linnaeus, 1758", _A, _CHORDATA, _MAMMALIA,
     (1459, "Rodentia"), (9456, "Sciuridae"), (2437489, "Sciurus")),
    (1938125, "Papilio machaon Linnaeus, 1758", _A, _ARTHRO, _INSECTA,
     (797, "Lepidoptera"), (9417, "Papilionidae"), (1938066, "Papilio")),
    (3189846, "Acer pseudoplatanus L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (933, "Sapindales"), (6657, "Sapindaceae"), (3189834, "Acer")),
    (5394222, "Taraxacum officinale F.H.Wigg.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (414, "Asterales"), (3065, "Asteraceae"), (3218823, "Taraxacum")),
    (2492462, "Erithacus rubecula (Linnaeus, 1758)", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (9322, "Muscicapidae"), (2492455, "Erithacus")),
    (3189357, "Plantago lanceolata L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (408, "Lamiales"), (2420, "Plantaginaceae"), (3189235, "Plantago")),
    (2480242, "Cyanistes caeruleus (Linnaeus, 1758)", _A, _CHORDATA, _AVES,
     (729, "Passeriformes"), (9327, "Paridae"), (2480241, "Cyanistes")),
    (5410907, "Boletus edulis Bull.", _F, _BASIDIO, _AGARICOMYCETES,
     (1452, "Boletales"), (8789, "Boletaceae"), (2524169, "Boletus")),
    (8351737, "Hedera helix L.", _P, _TRACHEO, _MAGNOLIOPSIDA,
     (1351, "Apiales"), (6745, "Araliaceae"), (3036250, "Hedera")),
)
# fmt: on

# Synonyms the species match knows: (usageKey, scientificName, accepted speciesKey).
SYNONYMS: tuple[tuple[int, str, int], ...] = (
    (7412043, "Parus caeruleus Linnaeus, 1758", 2480242),
    (5219250, "Canis vulpes Linnaeus, 1758", 5219243),
    (8327571, "Leontodon taraxacum L.", 5394222),
    (3054130, "Quercus pedunculata Ehrh.", 2878688),
    (1427070, "Agrion splendens Harris, 1780", 1427067),
)

# fmt: off
FIRST_NAMES = (
    "Ana", "Bram", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivo", "Jun", "Kofi",
    "Lena", "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tomás",
)
# fmt: on
LAST_NAMES = (
    "Silva",
    "Novak",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Kowalski",
    "Haddad",
    "Fischer",
    "Nguyen",
    "Oliveira",
    "Petrov",
    "Rossi",
    "Schmidt",
    "Dubois",
    "Mensah",
    "García",
    "Jensen",
    "Kim",
    "Walsh",
)
ISSUES: tuple[list[str], ...] = (
    ["COORDINATE_ROUNDED", "CONTINENT_DERIVED_FROM_COORDINATES"],
    ["CONTINENT_DERIVED_FROM_COORDINATES"],
    ["GEODETIC_DATUM_ASSUMED_WGS84"],
    [],
    ["COORDINATE_ROUNDED", "GEODETIC_DATUM_ASSUMED_WGS84", "TAXON_MATCH_TAXON_ID_IGNORED"],
)

# Media kinds (the ``media_kind`` column, per slot).
KIND_NONE, KIND_IMAGE, KIND_NO_ID, KIND_NO_TYPE, KIND_SOUND, KIND_IIIF, KIND_VIDEO = range(7)
KIND_P = (0.86, 0.04, 0.04, 0.03, 0.015, 0.015)
KIND_BIT = np.array([0, 1, 1, 0, 4, 8, 2], dtype=np.uint8)  # MEDIA_TYPES bit per kind

MAX_MEDIA = 3
#: ``type`` (None: left out) and ``format`` of the media kinds that have an identifier.
MEDIA_TYPE_FORMAT: dict[int, tuple[str | None, str]] = {
    KIND_IMAGE: ("StillImage", "image/jpeg"),
    KIND_NO_TYPE: (None, "image/jpeg"),
    KIND_SOUND: ("Sound", "audio/mpeg"),
    KIND_IIIF: ("InteractiveResource", "application/ld+json"),
    KIND_VIDEO: ("MovingImage", "video/mp4"),
}
RANGE_PARAMS = ("year", "month", "day", "decimalLatitude", "decimalLongitude", "elevation")
