"""`lbdask stats DEST`: hottest, coldest (never-read objects first) with their reads in a recent
window, and the access-age histogram."""
import hashlib
import json
import subprocess
import sys
import time

from lbdask.access.log import Access, AccessLog, age_bucket
from lbdask.archive import Archive, CatalogRow
from lbdask.cli import main
from lbdask.storage import open_location

MODEL = {"name": "tiny", "fingerprint": "f" * 64, "latent_channels": 4, "downsample": 8, "config": {}}
DAY = 86400.0


def kept_archive(dest, names):
    """An archive of kept objects (no model needed) plus one failed row, which is no object."""
    arc = Archive.create(dest, MODEL)
    blobs = {n: n.encode() * 3 for n in names}
    refs = arc.put_originals("b0", blobs)
    rows = [CatalogRow(id=n, status="kept", reason="alpha", source_size=len(b), source_sha256=hashlib.sha256(b).hexdigest(),
                       width=1, height=1, mode="RGB", stored_bytes=len(b), original=refs[n]) for n, b in blobs.items()]
    rows.append(CatalogRow(id="broken.png", status="failed", reason="corrupt PNG", source_size=5))
    arc.commit("b0", rows)
    return arc


def test_stats_json_lists_hottest_coldest_and_ages(dest, capsys):
    kept_archive(dest, ["hot.png", "warm.png", "old.png", "never.png"])
    now = time.time()
    log = AccessLog(open_location(dest), "w")
    for _ in range(3):
        log.add("warm.png", now - 2 * DAY)
    for _ in range(5):
        log.add("hot.png", now - 60)
    log.add("old.png", now - 40 * DAY)
    log.add("gone.png", now)  # counted, then removed from the catalog
    log.flush()
    assert main(["stats", dest, "--top", "2", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["objects"], s["accessed"], s["reads"], s["not_in_catalog"]) == (4, 3, 9, 1)
    assert [(r["id"], r["count"]) for r in s["hottest"]] == [("hot.png", 5), ("warm.png", 3)]
    assert (s["window_days"], s["window_reads"]) == (7, 8)  # promote.window_days of configs/retier.yaml
    assert [r["window_reads"] for r in s["hottest"]] == [5, 3]
    assert [(r["id"], r["count"], r["last_access"]) for r in s["coldest"]] == [("never.png", 0, None), ("old.png", 1, s["coldest"][1]["last_access"])]
    assert 40 * DAY - 5 < s["coldest"][1]["age_s"] < 40 * DAY + 60
    hist = {b["age"]: b["objects"] for b in s["age_histogram"]}
    assert hist == {"< 1 h": 1, "1 h - 1 d": 0, "1 - 7 d": 1, "7 - 30 d": 0, "30 - 90 d": 1, ">= 90 d": 0, "never": 1}
    assert main(["stats", dest, "--top", "2", "--json", "--window-days", "1"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["window_days"], s["window_reads"]) == (1, 5) and [r["window_reads"] for r in s["hottest"]] == [5, 0]
    assert [r["count"] for r in s["hottest"]] == [5, 3]  # totals unchanged


def test_age_histogram_bucket_edges():
    stats = {"a": Access(1, 1000.0 - 3599), "b": Access(1, 1000.0 - 3600), "c": Access(1, 1000.0 - 100 * DAY)}
    assert [age_bucket(stats.get(i), 1000.0) for i in "abcd"] == ["< 1 h", "1 h - 1 d", ">= 90 d", "never"]


def test_stats_text_output_and_errors(tmp_path, capsys):
    """The output and an error of `lbdask stats` as a program; the refused options in this process."""
    dest = str(tmp_path / "arc")
    kept_archive(dest, ["a.png", "b.png"])
    log = AccessLog(open_location(dest), "w")
    log.add("a.png")
    log.flush()
    out = subprocess.run([sys.executable, "-m", "lbdask", "stats", dest, "--top", "5"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"access statistics of {dest} at ") and lines[0].endswith(
        "2 objects, 1 read at least once, 1 reads, 1 in the last 7 d")
    assert lines[lines.index("hottest:") + 1] == "  reads\t7 d\tlast read (UTC)\t\tage\tid"
    hottest = lines[lines.index("hottest:") + 2]
    assert hottest.startswith("  1\t1\t") and hottest.endswith("\ta.png")
    coldest = lines[lines.index("coldest:") + 2]
    assert coldest.startswith("  0\t0\tnever") and coldest.endswith("\tb.png")
    assert any(line.strip().startswith("never") and line.split()[1] == "1" for line in lines)
    for bad in (["--top", "-1"], ["--storage-options", "[]"], ["--window-days", "-1"]):
        capsys.readouterr()
        assert main(["stats", dest, *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("lbdask: error:") and len(err.splitlines()) == 1, (bad, err)
    out = subprocess.run([sys.executable, "-m", "lbdask", "stats", str(tmp_path / "none")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("lbdask: error:"), out.stderr
