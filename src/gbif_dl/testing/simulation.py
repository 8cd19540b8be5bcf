"""Everything together: media hosts, a population pointing at them, and the GBIF API.

Example:
    >>> import json, urllib.request
    >>> with Simulation(seed=0, size=100, n_hosts=2) as simu:
    ...     page = json.load(urllib.request.urlopen(simu.api_url + "/occurrence/search?limit=1"))
    ...     url = page["results"][0]["media"][0].get("identifier", "")
    >>> url.startswith(tuple(simu.hosts.base_urls)) or url == ""
    True
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from gbif_dl.testing.mediahost import HostFaults, MediaHosts
from gbif_dl.testing.naming import HostNameProxy
from gbif_dl.testing.population import Population
from gbif_dl.testing.simulator import GbifSimulator

__all__ = ["Simulation", "serve_forever"]

logger = logging.getLogger(__name__)


class Simulation:
    """Start :class:`MediaHosts`, build a :class:`Population` whose media point at them, and
    serve it with a :class:`GbifSimulator`; a context manager.

    Args:
        seed, size: of the population.
        n_hosts: media hosts (``127.0.0.1`` .. ``127.0.0.N``).
        host_faults: one :class:`HostFaults` for all hosts or ``{host_index: HostFaults}``.
        api_latency_s: latency of every API answer.
        users: Basic-auth users for download creation (default ``{"alice": "secret"}``).
        api_host, api_port: where the API listens (port 0 = a free port).
        media_host_names: fixed names for the media hosts (one per host, e.g.
            :func:`gbif_dl.testing.naming.host_names`): media URLs then carry these names
            instead of ``127.0.0.N:PORT``, so they stay the same from run to run; clients reach
            them through :attr:`proxy_url`.
        **population_kwargs: ``n_species``, ``n_datasets``, ``species_weights``.

    Attributes (after start): ``api_url``, ``population``, ``hosts``, ``api``, ``proxy_url``.

    Example:
        >>> with Simulation(seed=1, size=50, n_hosts=1, n_species=3) as simu:
        ...     len(simu.population.species)
        3
    """

    def __init__(
        self,
        seed: int = 0,
        size: int = 2_000,
        n_hosts: int = 2,
        host_faults: HostFaults | Mapping[int, HostFaults] | None = None,
        api_latency_s: float = 0.0,
        *,
        users: Mapping[str, str] | None = None,
        api_host: str = "127.0.0.1",
        api_port: int = 0,
        media_host_names: Sequence[str] | None = None,
        **population_kwargs: Any,
    ) -> None:
        self.seed = seed
        self.size = size
        self._population_kwargs = population_kwargs
        self.hosts = MediaHosts(n_hosts=n_hosts, faults=host_faults)
        self._api_latency_s = api_latency_s
        self._users = dict(users) if users is not None else {"alice": "secret"}
        self._api_host = api_host
        self._api_port = api_port
        self._population: Population | None = None
        self._api: GbifSimulator | None = None
        names = list(media_host_names or [])
        if names and len(names) != n_hosts:
            raise ValueError(f"media_host_names needs {n_hosts} names, got {len(names)}")
        self._names = names
        self._proxy: HostNameProxy | None = None

    def start(self) -> Simulation:
        """Start the hosts and the API (idempotent); returns ``self``."""
        if self._api is not None:
            return self
        self.hosts.start()
        try:
            base_urls = self.hosts.base_urls
            if self._names:
                self._proxy = HostNameProxy(dict(zip(self._names, base_urls, strict=True)))
                base_urls = self._proxy.start().base_urls()
            self._population = Population(
                seed=self.seed,
                size=self.size,
                media_base_urls=base_urls,
                **self._population_kwargs,
            )
            self._api = GbifSimulator(
                self._population,
                latency_s=self._api_latency_s,
                users=self._users,
                host=self._api_host,
                port=self._api_port,
                seed=self.seed,
            ).start()
        except BaseException:
            self._close_media()
            raise
        return self

    def close(self) -> None:
        """Stop the API and the hosts."""
        if self._api is not None:
            self._api.close()
            self._api = None
        self._close_media()

    def _close_media(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        self.hosts.close()

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def api(self) -> GbifSimulator:
        """The running :class:`GbifSimulator`."""
        if self._api is None:
            raise RuntimeError("Simulation is not started; use it as a context manager")
        return self._api

    @property
    def population(self) -> Population:
        """The served :class:`Population`."""
        if self._population is None:
            raise RuntimeError("Simulation is not started; use it as a context manager")
        return self._population

    @property
    def api_url(self) -> str:
        """The GBIF API base URL to give a client (``http://127.0.0.1:PORT/v1``)."""
        return self.api.api_url

    @property
    def media_base_urls(self) -> Sequence[str]:
        """The base URLs of the media URLs (the fixed names' when ``media_host_names`` is set)."""
        return self.population.media_base_urls if self._population else self.hosts.base_urls

    @property
    def proxy_url(self) -> str | None:
        """The ``proxy=`` that reaches the named media hosts (None without names)."""
        return self._proxy.proxy_url if self._proxy is not None else None


def serve_forever(
    port: int, *, size: int, seed: int, n_hosts: int, host: str = "127.0.0.1"
) -> None:
    """Run a :class:`Simulation` with its API on ``host:port`` until interrupted (Ctrl-C).

    Prints nothing; logs the API URL at INFO.

    Example:
        >>> # gbif-dl simulate --port 8080   (the CLI calls serve_forever(8080, ...))
    """
    with Simulation(seed=seed, size=size, n_hosts=n_hosts, api_host=host, api_port=port) as simu:
        logger.info(
            "GBIF simulator: API %s, media hosts %s, %d records (seed %d)",
            simu.api_url,
            ", ".join(simu.hosts.base_urls),
            size,
            seed,
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            logger.info("GBIF simulator stopped")
