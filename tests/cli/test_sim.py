"""`lbdask trace generate` and `lbdask sim` end to end on a small trace."""
from __future__ import annotations

import json

from lbdask.cli import main


def test_trace_and_sim_commands(tmp_path, capsys):
    trace = tmp_path / "t.npz"
    assert main(["trace", "generate", str(trace), "--requests", "60000", "--seed", "3"]) == 0
    assert main(["trace", "stats", str(trace)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert abs(stats["once_fraction"] - 0.15) < 0.02
    md, png, gain = tmp_path / "t.md", tmp_path / "alpha.png", tmp_path / "gain.png"
    rc = main(["sim", str(trace), "--cache-frac", "0.01,0.05", "--policy", "lru", "s3fifo",
               "--alpha", "adaptive", "0,1", "0.5", "--window", "2000", "--markdown", str(md), "--plot", str(png),
               "--compare-static", "0.5", "--window-plot", str(gain), "--json"])
    assert rc == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 * 4 * 2
    for r in rows:
        assert abs(r["image_frac"] + r["latent_frac"] + r["miss_frac"] - 1) < 1e-9
        assert r["mean_latency_ms"] > 0
    assert {r["alpha"] for r in rows} == {"adaptive", "0", "1", "0.5"}
    assert all(r["latent_frac"] == 0 for r in rows if r["alpha"] == "1")
    assert all(r["image_frac"] == 0 for r in rows if r["alpha"] == "0")
    text = md.read_text()
    assert "LB-Adaptive" in text and png.read_bytes()[:4] == b"\x89PNG"
    window_rows = [line for line in text.split("Window by window")[1].splitlines() if line.startswith("| lru")]
    assert len(window_rows) == 2 and gain.read_bytes()[:4] == b"\x89PNG"


def test_bad_options_exit_2(tmp_path, capsys):
    assert main(["sim", str(tmp_path / "missing.npz")]) == 2
    assert "lbdask: error:" in capsys.readouterr().err
    trace = tmp_path / "t.npz"
    main(["trace", "generate", str(trace), "--requests", "5000"])
    assert main(["sim", str(trace), "--alpha", "sometimes"]) == 2
    assert main(["sim", str(trace), "--cache-frac", "2"]) == 2
    assert main(["sim", str(trace), "--policy", "fifo"]) == 2
