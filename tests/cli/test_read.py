import json
import os

import pytest

from lbdask import cli
from lbdask.archive import Archive
from lbdask.archive.history import write_job_record
from lbdask.image import pngio
from tests.support.reader import build_archive


@pytest.fixture(autouse=True)
def only_archive_commands(monkeypatch):
    # the commands under test, through the real `lbdask` entry point (errors -> exit 2)
    monkeypatch.setattr(cli, "SUBCOMMANDS", ["read", "ls", "report"])


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus_dir, taef2_dir):
    dest, sources, _ = build_archive(str(tmp_path_factory.mktemp("cli") / "arc"), corpus_dir, taef2_dir)
    write_job_record(Archive.open(dest, mode="a"), {"images_processed": 4, "seconds": 2.0, "bytes_source": 4_000_000})
    return dest, sources


def test_read_writes_png_bytes_to_stdout_or_file(archive, taef2_dir, tmp_path, capfdbinary):
    dest, sources = archive
    assert cli.main(["read", dest, "kept.png"]) == 0
    assert capfdbinary.readouterr().out == sources["kept.png"]
    out = tmp_path / "photo.png"
    assert cli.main(["read", dest, "dir/photo.png", "-o", str(out), "--weights", str(taef2_dir)]) == 0
    rgb, _ = pngio.decode(out.read_bytes(), 10**6)
    assert rgb.shape == (72, 96, 3)


def test_read_of_a_failed_input_gives_its_raw_bytes_and_a_note(archive, capfdbinary):
    dest, sources = archive
    assert cli.main(["read", dest, "broken.png"]) == 0
    got = capfdbinary.readouterr()
    assert got.out == sources["broken.png"]
    note = got.err.decode()
    assert note.count("\n") == 1 and "not a decodable PNG" in note and "corrupt PNG" in note


def test_read_errors_are_one_line_exit_2(archive, tmp_path, capfd):
    dest, _ = archive
    assert cli.main(["read", dest, "nope.png"]) == 2
    err = capfd.readouterr().err
    assert err.startswith("lbdask: error: no image 'nope.png' in archive") and err.count("\n") == 1
    assert cli.main(["read", str(tmp_path / "nothing"), "x.png"]) == 2
    assert "unreachable after 3 attempts" in capfd.readouterr().err   # no such folder
    assert cli.main(["read", str(tmp_path), "x.png"]) == 2
    assert "no lbdask archive" in capfd.readouterr().err   # a folder, not an archive


def test_ls_lists_rows_filtered_by_status(archive, capsys):
    dest, _ = archive
    assert cli.main(["ls", dest, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["id"]: r["status"] for r in rows} == {
        "dir/photo.png": "latent", "opaque.png": "latent", "kept.png": "kept", "broken.png": "failed"}
    assert cli.main(["ls", dest, "--status", "kept", "--status", "failed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("id\t") and sorted(line.split("\t")[0] for line in lines[1:]) == ["broken.png", "kept.png"]


def test_report_json_has_the_contract_keys_and_true_numbers(archive, capsys):
    dest, sources = archive
    assert cli.main(["report", dest, "--json"]) == 0
    def strict(name):
        raise AssertionError(f"report JSON contains {name}")

    rep = json.loads(capsys.readouterr().out, parse_constant=strict)
    assert (rep["images_total"], rep["images_latent"], rep["images_kept_png"], rep["images_failed"]) == (4, 2, 1, 1)
    assert rep["bytes_source"] == sum(len(b) for b in sources.values())
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for part in ("latents", "originals", "catalog")
                  for d, _, files in os.walk(os.path.join(dest, part)) for f in files)
    assert rep["bytes_stored"] == on_disk
    assert rep["drr"] == pytest.approx(1 - on_disk / rep["bytes_source"])
    psnrs = sorted(r.psnr for r in Archive.open(dest).rows() if r.status == "latent")
    assert rep["psnr_min"] == pytest.approx(psnrs[0]) and rep["psnr_mean"] == pytest.approx(sum(psnrs) / 2)
    assert psnrs[0] <= rep["psnr_p05"] <= psnrs[1]
    assert rep["model"] == "taef2" and len(rep["model_fingerprint"]) == 64
    assert rep["kept_reasons"] == {"alpha": 1} and rep["failed_reasons"] == {"corrupt PNG": 1}
    assert sum(b["count"] for b in rep["psnr_histogram"]) == 2
    assert rep["throughput"]["images_per_s"] == pytest.approx(2.0)
    assert rep["throughput"]["source_mb_per_s"] == pytest.approx(2.0)


def test_report_text_is_readable(archive, capsys):
    assert cli.main(["report", archive[0]]) == 0
    text = capsys.readouterr().out
    assert "DRR" in text and "2 latent, 1 kept as PNG, 1 failed" in text and "1 x alpha" in text
