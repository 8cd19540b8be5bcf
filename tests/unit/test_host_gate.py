"""Host planning and the host gate: shards cut by host, at most ``lanes`` shards on a host."""

from __future__ import annotations

import concurrent.futures as cf
import random
from pathlib import Path

import pytest

from gbif_dl.fetch import FetchConfig
from gbif_dl.records import host_key
from gbif_dl.runners.gate import HostGate, HostState, run_gated, share_hosts
from gbif_dl.runners.report import ClusterProgress, ShardTicker
from gbif_dl.shards import plan as plan_module
from gbif_dl.shards.files import read_shard_records
from gbif_dl.shards.plan import host_threshold, plan_shards
from gbif_dl.shards.run import ShardResult


def _urls(counts: dict[str, int]) -> list[str]:
    """URLs of several hosts, interleaved (as a GBIF search returns them)."""
    left = dict(counts)
    out = []
    i = 0
    while any(left.values()):
        for host in counts:
            if left[host]:
                out.append(f"http://{host}/{i}.jpg")
                left[host] -= 1
                i += 1
    return out


def test_by_host_plan_gives_big_hosts_their_own_shards(tmp_path: Path) -> None:
    """Interleaved records: with by_host, every shard of a big host holds only that host; the
    small hosts and the first records of every host share mixed shards; every record is in
    exactly one shard; the plan is the same on a rerun (the shards are then done-free but
    unchanged), and without by_host the shards mix hosts as before."""
    urls = _urls({"big-a.org": 95, "big-b.org": 60, "tiny-1.org": 2, "tiny-2.org": 1})
    plan = plan_shards(urls, tmp_path, size=20, by_host=True)
    assert host_threshold(20) == 2
    seen = []
    for sid in plan.shard_ids:
        records = read_shard_records(tmp_path, sid)
        hosts = {host_key(r["url"]) for r in records}
        assert hosts == plan.hosts[sid]
        assert len(records) <= 20
        seen += [r["url"] for r in records]
    assert sorted(seen) == sorted(urls)
    pure = [sid for sid in plan.shard_ids if len(plan.hosts[sid]) == 1]
    big_a = sum(
        len(read_shard_records(tmp_path, s)) for s in pure if plan.hosts[s] == {"big-a.org"}
    )
    assert big_a >= 94  # all but its first record
    mixed = [sid for sid in plan.shard_ids if len(plan.hosts[sid]) > 1]
    assert len(mixed) == 1 and {"tiny-1.org", "tiny-2.org"} <= plan.hosts[mixed[0]]

    again = plan_shards(urls, tmp_path, size=20, by_host=True)
    assert (again.shard_ids, again.hosts) == (plan.shard_ids, plan.hosts)

    flat = plan_shards(urls, tmp_path, size=20)
    assert max(len(h) for h in flat.hosts.values()) >= 2


def test_by_host_plan_keeps_a_bounded_number_of_files_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More hosts than MAX_OPEN_SHARDS: the least recently written shard is closed short; no
    record is lost or written twice, and no shard holds two big hosts."""
    monkeypatch.setattr(plan_module, "MAX_OPEN_SHARDS", 3)
    urls = _urls({f"h{i}.org": 12 for i in range(6)})
    plan = plan_shards(urls, tmp_path, size=10, by_host=True)
    seen = [r["url"] for sid in plan.shard_ids for r in read_shard_records(tmp_path, sid)]
    assert sorted(seen) == sorted(urls)
    assert all(len(plan.hosts[sid]) == 1 for sid in plan.shard_ids)  # threshold 1: all pure
    assert len(plan.shard_ids) > 6 * 2  # closed short when evicted


def test_gate_never_lets_more_than_lanes_shards_on_a_host() -> None:
    """Random shards over random hosts, started and finished in random order: no host ever has
    more than `lanes` running shards, and every shard runs once."""
    rng = random.Random(7)
    hosts = {sid: frozenset(rng.sample("abcdef", rng.randint(1, 3))) for sid in range(60)}
    gate = HostGate(hosts, lanes=2)
    pending = list(hosts)
    running: list[int] = []
    ran = []
    while pending or running:
        started = gate.admit(pending, free=rng.randint(0, 5) if running else 5)
        pending = list(gate.queued)
        running += started
        ran += started
        for host in "abcdef":
            assert sum(host in hosts[s] for s in running) <= 2
        if running:
            gate.release(running.pop(rng.randrange(len(running))))
    assert sorted(ran) == list(range(60))
    assert gate.max_per_host == 2 and gate.state() == {}


def test_gate_state_and_lanes_arithmetic() -> None:
    """share_hosts: lanes = min(per_host, slots); per_host // lanes per shard; the state names
    the running and queued shards per host."""
    assert share_hosts(FetchConfig(per_host=4, concurrency=128), 32)[0].per_host == 1
    assert share_hosts(FetchConfig(per_host=4, concurrency=128), 32)[1] == 4
    assert share_hosts(FetchConfig(per_host=16), 3)[0].per_host == 5
    assert share_hosts(FetchConfig(per_host=2), 1)[1] == 1
    gate = HostGate({0: {"a"}, 1: {"a"}, 2: {"a", "b"}}, lanes=1)
    assert gate.admit([0, 1, 2], free=3) == [0]
    assert gate.state() == {"a": HostState(1, 2), "b": HostState(0, 1)}


def test_run_gated_runs_everything_within_lanes_on_threads() -> None:
    """run_gated over a thread pool: each shard once, results in shard order, one shard per
    host at a time (lanes=1) and three at once (one per host)."""
    hosts = {sid: frozenset({f"h{sid % 3}"}) for sid in range(12)}
    gate = HostGate(hosts, lanes=1)
    finished: list[int] = []
    with cf.ThreadPoolExecutor(6) as pool:
        results = run_gated(
            list(hosts), gate, slots=lambda: 6,
            submit=lambda sid: pool.submit(ShardResult, shard_id=sid, success=sid),
            wait=lambda fs: cf.wait(fs, 1, cf.FIRST_COMPLETED).done,
            result=lambda f: f.result(), on_done=lambda r: finished.append(r.shard_id),
        )  # fmt: skip
    assert [r.shard_id for r in results] == list(range(12))
    assert sorted(finished) == list(range(12))
    assert gate.max_per_host == 1 and gate.max_running == 3


def test_cluster_progress_results_replace_ticks_and_the_line_names_hosts() -> None:
    """Ticks of a lost attempt are replaced by the rerun's, late ticks of a done shard are
    ignored, and the line shows counts, shards and per-host state."""
    progress = ClusterProgress(total=30, mode=False)
    gate = HostGate({0: {"a.org"}, 1: {"a.org"}, 2: {"b.org"}}, lanes=1)
    progress.begin(3, gate)
    gate.admit([0, 1, 2], free=3)
    sent: list[dict] = []
    lost = ShardTicker(0, sent.append)
    for _ in range(4):
        lost.update("success", 10)
    lost.flush()
    rerun = ShardTicker(0, sent.append)
    rerun.update("skipped")
    rerun.flush()
    for tick in sent:
        progress.post(tick)
    progress.poll()
    assert progress.totals()["success"] == 0 and progress.totals()["skipped"] == 1
    progress.finish(ShardResult(shard_id=0, success=6, skipped=4, bytes=60))
    progress.post(sent[0])  # late
    progress.poll()
    assert progress.totals() == {"success": 6, "failed": 0, "skipped": 4, "bytes": 60}
    line = progress.line()
    assert line.startswith("10/30 img") and "ok 6, failed 0, skipped 4" in line
    assert "shards 2 running, 1 queued, 1/3 done" in line  # the runner releases the gate
    assert "a.org 1/1" in line and "b.org 1/0" in line
