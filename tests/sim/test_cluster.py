"""The cluster simulator: same router as the live client, hand-computed latencies, invariants."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lbdask.routing.coalesce
import lbdask.routing.ring
from lbdask.cache.settings import CacheConfig, CacheSettings
from lbdask.cli import main
from lbdask.errors import ConfigError
from lbdask.sim import engine, placement
from lbdask.sim.cluster import ClusterConfig, Workload, simulate_cluster
from lbdask.sim.dist import Dist, parse_dist
from lbdask.sim.engine import COALESCED, IMAGE, LATENT, MISS
from lbdask.sim.trace import generate_trace, save_trace

WORKERS = [f"tcp://10.0.0.{i}:8786" for i in range(8)]


def workload(ms: list[float], objs: list[int], n_objects: int | None = None) -> Workload:
    """Requests at `ms` (speed-up 1) for dense objects `objs` (trace id = object + 1)."""
    n = n_objects or max(objs) + 1
    sizes = np.array([[1000] * n, [200] * n], np.int64)
    return Workload(np.array(ms, float) / 1000, np.array(objs, np.int32), np.arange(1, n + 1), sizes)


def deterministic(**kw) -> ClusterConfig:
    base = dict(nodes=1, decode_ms=Dist("const", 30.0), fetch_ms=Dist("const", 100.0),
                network_ms=Dist("const", 10.0), ship_ms=0.0, warmup=0.0, alpha="0.5", cache_frac=1.0,
                spillover=False, coalesce=False)
    return ClusterConfig(**{**base, **kw})


def promote_after(h: int) -> CacheSettings:
    return CacheSettings(cache=CacheConfig(promote_after=h))


# -- one router ---------------------------------------------------------------------------
def test_simulator_routes_with_the_serving_modules_themselves():
    assert engine.choose_decoder is lbdask.routing.ring.choose_decoder
    assert engine.Coalescer is lbdask.routing.coalesce.Coalescer
    assert placement.ring_from_workers is lbdask.routing.ring.ring_from_workers


def test_simulator_and_live_client_agree_on_owners_for_the_same_membership():
    live = lbdask.routing.ring.ring_from_workers(WORKERS)           # what the serving client builds
    ids = np.arange(1, 20001, dtype=np.int64) * 7919
    sim = placement.owner_index(ids, WORKERS)
    assert [WORKERS[i] for i in sim] == [live.owner(str(i)) for i in ids.tolist()]
    assert len(set(sim.tolist())) == len(WORKERS)


def test_simulated_per_node_load_is_the_live_rings_placement():
    trace = generate_trace(5000, seed=3)
    work = Workload.from_trace(trace)
    r = simulate_cluster(work, ClusterConfig(nodes=len(WORKERS), warmup=0.0), speedup=1e5, members=WORKERS)
    live = lbdask.routing.ring.ring_from_workers(WORKERS)
    expected = Counter(live.owner(str(i)) for i in trace.id.tolist())
    assert dict(zip(WORKERS, r.owner_requests.tolist())) == {w: expected[w] for w in WORKERS}


# -- latency accounting, computed by hand -------------------------------------------------------
def test_miss_queue_latent_hit_and_image_hit_latencies():
    # A miss at 0 ms: fetch 100, decode 100-130, +10 network = 140. B at 50: GPU 150-180 -> 140.
    # C at 60: reaches the GPU at 160, waits for B until 180, done 210 -> 210 - 60 + 10 = 160.
    # A again at 1000: latent hit, decode 1000-1030 -> 40; with h = 1 it is promoted, so A at 2000 is
    # an image hit: the network hop only, 10.
    w = workload([0, 50, 60, 1000, 2000], [0, 1, 2, 0, 0])
    r = simulate_cluster(w, deterministic(), 1.0, promote_after(1))
    assert r.latency_ms.tolist() == pytest.approx([140, 140, 160, 40, 10])
    assert r.tier.tolist() == [MISS, MISS, MISS, LATENT, IMAGE]
    assert r.queue_wait_ms.tolist() == pytest.approx([0, 0, 20, 0])
    assert r.node_decodes.tolist() == [4]
    assert r.sim_ms == pytest.approx(2010)
    assert r.busy_frac[0] == pytest.approx(120 / 2010)


def test_gpus_per_node_share_the_queue():
    # two GPUs on one node: the first two misses decode side by side (100-130), the third waits
    # for the first free GPU (130-160): 170 ms; the node's depth is its least-loaded GPU's
    r = simulate_cluster(workload([0, 0.5, 1], [0, 1, 2]), deterministic(gpus_per_node=2), 1.0)
    assert r.latency_ms.tolist() == pytest.approx([140, 140, 169])
    assert r.queue_wait_ms.tolist() == pytest.approx([0, 0, 29])
    assert r.depth_max.tolist() == [1]
    assert r.busy_frac[0] == pytest.approx(90 / 2 / r.sim_ms)


@pytest.mark.parametrize("coalesce,latencies,tiers,decodes", [
    (True, [140, 120, 90], [MISS, COALESCED, COALESCED], 1),
    # without coalescing every request fetches and decodes: GPU 100-130, 130-160, 160-190
    (False, [140, 150, 150], [MISS, MISS, MISS], 3),
])
def test_coalescing_a_burst_on_one_id(coalesce, latencies, tiers, decodes):
    r = simulate_cluster(workload([0, 20, 50], [0, 0, 0]), deterministic(coalesce=coalesce), 1.0)
    assert r.latency_ms.tolist() == pytest.approx(latencies)
    assert r.tier.tolist() == tiers
    assert r.row()["coalesced"] == 3 - decodes
    assert r.node_decodes.sum() == decodes


def _ids_owned_by(node: int, members: list[str], count: int) -> list[int]:
    ring = lbdask.routing.ring.ring_from_workers(members)
    return [i for i in range(1, 1000) if ring.owner(str(i)) == members[node]][:count]


@pytest.mark.parametrize("spill,latencies,spilled,decodes", [
    # theta 1: the third and fourth decodes find the owner 2 deep and go to the idle node
    (True, [140, 169, 140, 169], 2, [2, 2]),
    (False, [140, 169, 198, 227], 0, [4, 0]),
])
def test_spillover_moves_decodes_and_writes_back_to_the_owner(spill, latencies, spilled, decodes):
    members = placement.node_members(2)
    ids = _ids_owned_by(0, members, 4)
    w = Workload(np.array([0, 1, 2, 3]) / 1000, np.arange(4, dtype=np.int32), np.array(ids),
                 np.array([[1000] * 4, [200] * 4], np.int64))
    r = simulate_cluster(w, deterministic(nodes=2, spillover=spill, theta=1), 1.0)
    assert r.latency_ms.tolist() == pytest.approx(latencies)
    assert r.spilled == spilled
    assert r.node_decodes.tolist() == decodes
    assert r.cache_bytes.tolist() == [800, 0]         # every latent lives on its owner


def test_spilled_latent_hit_pays_the_shipment():
    members = placement.node_members(2)
    ids = _ids_owned_by(0, members, 3)
    # warm-up puts all three latents in node 0's cache; then three latent hits at 0, 1, 2 ms, theta 1:
    # the third spills, ships 5 ms, decodes 7-37 on node 1 -> 37 - 2 + 10 = 45
    w = Workload(np.array([0, 0, 0, 10, 10.001, 10.002]), np.array([0, 1, 2, 0, 1, 2], np.int32), np.array(ids),
                 np.array([[1000] * 3, [200] * 3], np.int64))
    r = simulate_cluster(w, deterministic(nodes=2, spillover=True, theta=1, ship_ms=5.0, warmup=0.5), 1.0)
    assert r.tier.tolist() == [LATENT] * 3
    assert r.latency_ms.tolist() == pytest.approx([40, 69, 45])


def test_baselines_decode_all_and_imgstore():
    w = workload([0, 1000, 2000], [0, 0, 0], n_objects=3)
    r = simulate_cluster(w, deterministic(alpha="decode-all", coalesce=True), 1.0)
    assert r.tier.tolist() == [MISS] * 3 and r.cache_bytes.tolist() == [0]
    s = simulate_cluster(w, deterministic(alpha="imgstore", png_fetch_ms=Dist("const", 150.0)), 1.0)
    assert s.latency_ms.tolist() == pytest.approx([160, 10, 10])   # PNG fetch + network, then image hits
    assert s.node_decodes.tolist() == [0]


# -- the paper's directions on a generated trace (docs/simulation.md has the full-size runs) --------------------
@pytest.mark.slow
def test_paper_directions_on_a_generated_trace():
    w = Workload.from_trace(generate_trace(100_000, seed=0))
    light = w.speedup_for_rate(0.5, 3.85)                     # Table 4: 3 nodes at the paper's load
    mean = {a: simulate_cluster(w, ClusterConfig(nodes=3, alpha=a), light).row()["mean_ms"]
            for a in ("adaptive", "imgstore", "0", "1", "decode-all")}
    assert mean["adaptive"] < 0.9 * min(mean["imgstore"], mean["0"], mean["1"])
    assert max(mean["imgstore"], mean["0"], mean["1"]) < 0.5 * mean["decode-all"]
    heavy = w.speedup_for_rate(0.5, 385)                      # Fig. 10: 6 nodes, theta 4, skewed load
    paper = promote_after(8)   # the paper's h: its decode queues; `auto` promotes sooner and decodes less
    on, off = (simulate_cluster(w, ClusterConfig(nodes=6, spillover=s), heavy, paper) for s in (True, False))
    assert on.spilled > 0 and off.spilled == 0
    assert on.row()["mean_ms"] < 0.95 * off.row()["mean_ms"]
    assert on.row()["p99_ms"] < 0.9 * off.row()["p99_ms"]


# -- invariants on random small scenarios ---------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.floats(0, 40), min_size=1, max_size=60), data=st.data(),
       nodes=st.integers(1, 4), coalesce=st.booleans(), spill=st.booleans(), theta=st.integers(0, 3),
       uniform=st.booleans())
def test_invariants(gaps, data, nodes, coalesce, spill, theta, uniform):
    objs = data.draw(st.lists(st.integers(0, 7), min_size=len(gaps), max_size=len(gaps)))
    w = workload(np.cumsum(gaps).tolist(), objs, 8)
    cfg = deterministic(nodes=nodes, coalesce=coalesce, spillover=spill, theta=theta, alpha="adaptive",
                        cache_frac=0.3, decode_ms=Dist("uniform", 20, 40) if uniform else Dist("const", 30.0))
    r = simulate_cluster(w, cfg, 1.0, promote_after(2))
    t = r.tier
    assert len(r.latency_ms) == len(gaps) and r.owner_requests.sum() == len(gaps)
    assert r.node_decodes.sum() == ((t == LATENT) | (t == MISS)).sum() == len(r.queue_wait_ms)
    assert (r.queue_wait_ms >= 0).all()
    assert (r.latency_ms[t == IMAGE] == 10).all()
    assert (r.latency_ms[t == LATENT] >= 30 - 10 * uniform).all()
    assert (r.latency_ms[t == MISS] >= 130 - 10 * uniform).all()
    assert (r.latency_ms >= 10 - 1e-9).all()
    assert coalesce or (t != COALESCED).all()
    assert spill or r.spilled == 0
    again = simulate_cluster(w, cfg, 1.0, promote_after(2))
    assert again.latency_ms.tolist() == r.latency_ms.tolist()


# -- distributions and the command line ------------------------------------------------------------
def test_parse_dist():
    assert parse_dist("const:32.6") == Dist("const", 32.6) == parse_dist("32.6")
    assert parse_dist("uniform:100:150").mean == 125
    rng = np.random.default_rng(0)
    assert parse_dist("lognormal:40:0.3").sample(rng, 200_000).mean() == pytest.approx(40, rel=0.01)
    for bad in ("uniform:5:1", "gauss:1", "const:-1", "lognormal:1", "x"):
        with pytest.raises(ConfigError):
            parse_dist(bad)


def test_cli_json_and_one_line_errors(tmp_path, capsys):
    path = tmp_path / "t.npz"
    save_trace(generate_trace(4000, seed=1), path)
    assert main(["sim-cluster", str(path), "--nodes", "2", "3", "--alpha", "adaptive", "decode-all",
                 "--spillover", "on", "off", "--rate-per-node", "50", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 8
    for row in rows:
        for key in ("nodes", "alpha", "spillover", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "requests",
                    "requests_per_s"):
            assert key in row
    assert main(["sim-cluster", str(path), "--decode-ms", "uniform:9:1"]) == 2
    assert "lbdask: error: --decode-ms" in capsys.readouterr().err
    assert main(["sim-cluster", str(path), "--alpha", "fast"]) == 2
