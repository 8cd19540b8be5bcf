"""Fixed media host names (gbif_dl.testing.naming): URLs that do not change with the ports."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gbif_dl import api, io
from gbif_dl.testing import HostNameProxy, MediaHosts, Simulation
from gbif_dl.testing.naming import host_names


def _fetch(url: str, proxy: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_the_proxy_forwards_names_to_their_hosts() -> None:
    """A named URL through the proxy gives the host's answer; an unknown name a 502."""
    with MediaHosts(n_hosts=2) as hosts:
        names = host_names(2)
        with HostNameProxy(dict(zip(names, hosts.base_urls, strict=True))) as proxy:
            status, body = _fetch(f"http://{names[1]}/media/3/0.jpg", proxy.proxy_url)
            direct = urllib.request.urlopen(hosts.base_urls[1] + "/media/3/0.jpg").read()
            assert (status, body) == (200, direct)
            assert _fetch("http://elsewhere.invalid/media/3/0.jpg", proxy.proxy_url)[0] == 502


def test_named_simulations_give_the_same_urls_on_every_run(tmp_path: Path) -> None:
    """Two runs of the same named world: same URLs (ports differ); downloads go through."""
    urls = []
    for run in range(2):
        with Simulation(seed=6, size=200, n_hosts=2, media_host_names=host_names(2)) as simu:
            items = list(api.generate_urls({}, nb_samples=10, api_url=simu.api_url))
            urls.append([item["url"] for item in items])
            assert simu.proxy_url is not None
            stats = io.download(items, root=tmp_path / str(run), proxy=simu.proxy_url)
            assert stats["success"] == 10
    assert urls[0] == urls[1]
    assert all(url.startswith(("http://media-1.", "http://media-2.")) for url in urls[0])


def test_names_must_match_the_hosts() -> None:
    """One name per host."""
    with pytest.raises(ValueError, match="media_host_names"):
        Simulation(n_hosts=2, media_host_names=["only-one.invalid"])
