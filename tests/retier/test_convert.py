"""`lbdask retier` convert on a folder: kept PNGs become lossless JPEG XL, pixel for pixel."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from lbdask.archive import Archive
from lbdask.image import pngsamples
from tests.support.retier import read_all, retier, write_policy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("jobs_cluster")]  # jobs on a cluster in this process

POLICY = """
demote: {enabled: false}
promote: {enabled: false}
convert: {enabled: true, effort: 3}
"""


def test_convert_on_a_folder_keeps_every_pixel_and_frees_the_png_objects(retier_archive, tmp_path, capsys):
    _, base = retier_archive
    dest = str(tmp_path / "arc")
    shutil.copytree(base, dest)
    before_rows = {r.id: r for r in Archive.open(dest).rows()}
    kept_png = sorted(i for i, r in before_rows.items() if r.status == "kept" and r.kept_format in (None, "png"))
    assert kept_png, "the session archive has kept PNGs"
    before = read_all(dest)
    stored_before = Archive.open(dest).bytes_on_store()
    policy = write_policy(tmp_path / "p.yaml", POLICY)

    assert retier(dest, "--policy", policy, "--apply") == 0
    capsys.readouterr()
    after_rows = {r.id: r for r in Archive.open(dest).rows()}
    converted = [i for i in kept_png if after_rows[i].kept_format == "jxl"]
    assert converted, "no kept PNG was converted"
    for image_id in set(kept_png) - set(converted):  # jxl was not smaller: the PNG stays, with the reason
        assert after_rows[image_id].kept_format == "png" and after_rows[image_id].kept_note, image_id
        assert after_rows[image_id].original == before_rows[image_id].original
    after = read_all(dest)
    assert after.keys() == before.keys()
    for image_id in kept_png:  # lossless: the same samples, mode and size as the source PNG
        assert np.array_equal(pngsamples.samples(after[image_id]), pngsamples.samples(before[image_id])), image_id
    for image_id in set(before) - set(kept_png):  # other rows untouched
        assert after[image_id] == before[image_id], image_id
    stored_after = Archive.open(dest).bytes_on_store()
    assert all(after_rows[i].stored_bytes < before_rows[i].stored_bytes for i in converted)
    assert sum(stored_after.values()) < sum(stored_before.values())  # the PNG objects were swept

    # a second apply finds nothing left to convert and changes nothing
    assert retier(dest, "--policy", policy, "--apply") == 0
    assert read_all(dest) == after
