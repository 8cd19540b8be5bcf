"""The package version, and the ``User-Agent`` built from it, in one place."""

__version__ = "0.2.0"

#: Where the project lives: named in the ``User-Agent`` so that server operators can reach us.
PROJECT_URL = "https://github.com/gbif-dl/gbif-dl"
#: The ``User-Agent`` of every request gbif-dl sends to GBIF.
USER_AGENT = f"gbif-dl/{__version__} (+{PROJECT_URL})"
