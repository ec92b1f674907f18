"""`lbdask retier --apply` with the prewarm move loads the predicted-hot set into a running
serving cluster (real `dask scheduler` / `dask worker` processes) and nothing else."""
from __future__ import annotations

import shutil
import time

import pytest
from distributed import Client

from lbdask.serve.deploy import install, uninstall
from lbdask.serve.settings import ServeSettings
from tests.support.cluster import DaskProcesses, subprocess_env
from tests.support.retier import DAY, record_reads, retier, store_digest, write_policy

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("store", ["folder", "s3"])
def test_prewarm_loads_the_hot_set_into_the_serving_caches(store, retier_archive, tmp_path, taef2_dir, request, capsys):
    _, shared = retier_archive
    if store == "folder":
        dest = str(tmp_path / "arc")
        shutil.copytree(shared, dest)
    else:
        import s3fs

        dest = request.getfixturevalue("s3_bucket") + "/arc"
        fs = s3fs.S3FileSystem()
        fs.put(shared + "/", dest[5:], recursive=True)
        fs.invalidate_cache()
    now = time.time()
    record_reads(dest, {"l0.png": (9, now - 60), "k0.png": (5, now - 3600), "l1.png": (50, now - 3 * DAY),
                        "l2.png": (1, now - 60)})
    procs = DaskProcesses(subprocess_env())
    try:
        procs.start_worker()
        procs.wait_workers(1)
        with Client(procs.address, timeout="20s") as client:
            install(client, dest, ServeSettings(), "taef2", str(taef2_dir))
        policy = write_policy(tmp_path / "p.yaml", f"""
demote: {{enabled: false}}
promote: {{enabled: false}}
prewarm: {{enabled: true, scheduler: "{procs.address}", window_days: 1, top: 2}}
""")
        before = {k: v for k, v in store_digest(dest).items() if "/retier/" not in k}
        assert retier(dest, "--policy", policy, "--apply") == 0
        assert "prewarm" in capsys.readouterr().out
        with Client(procs.address, timeout="20s") as client:
            stats = client.run(lambda dask_worker: dask_worker.handlers["lbdask_stats"]())
        assert sum(s["prewarmed"] for s in stats.values()) == 2  # l0 and k0: l1 is stale, l2 read once
        assert sum(s["requests"] for s in stats.values()) == 0
        after = {k: v for k, v in store_digest(dest).items() if "/retier/" not in k and "/lease/" not in k}
        assert after == before  # a prewarm writes nothing but the run summary
        with Client(procs.address, timeout="20s") as client:
            uninstall(client)
    finally:
        procs.close()
