"""Damaged sorted runs (`lbdask.archive.runs`): a footer, partition or block that does not parse
or does not match the level above it, a short read or a missing object, each named."""
import dataclasses
import gzip
import json
import os

import pytest

from lbdask.archive.runs import RunReader
from lbdask.errors import IntegrityError
from lbdask.storage import open_location
from tests.archive.test_runs import written


@pytest.fixture
def loc(tmp_path):
    return open_location(str(tmp_path))


def damage(loc, key, offset):
    with open(loc.path(key), "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def test_a_damaged_block_is_an_integrity_error_naming_the_object(loc):
    info = written(loc)
    damage(loc, info.key, 20)  # inside block 0
    reader = RunReader(loc)
    assert reader.get(info, "img010").id == "img010"  # other blocks still read
    with pytest.raises(IntegrityError, match=rf"{info.key} is unreadable \(partition 0 block 0: (BadGzipFile|error)\)"):
        reader.get(info, "img001")
    with pytest.raises(IntegrityError, match=info.key):
        list(reader.scan(info))


@pytest.mark.parametrize("where", ["first byte", "last byte"])
def test_a_damaged_footer_is_an_integrity_error_naming_the_object(loc, where):
    info = written(loc)
    damage(loc, info.key, info.footer_offset if where == "first byte" else info.size - 1)
    with pytest.raises(IntegrityError, match=f"{info.key}.*footer"):
        RunReader(loc).get(info, "img001")


def with_footer(loc, info, edit):
    """`info`'s run with its footer JSON passed through `edit` (a footer that parses but lies)."""
    with open(loc.path(info.key), "rb") as f:
        blob = f.read()
    footer = json.loads(gzip.decompress(blob[info.footer_offset:]))
    new = gzip.compress(json.dumps(edit(footer)).encode())
    with open(loc.path(info.key), "wb") as f:
        f.write(blob[: info.footer_offset] + new)
    return dataclasses.replace(info, footer_size=len(new), size=info.footer_offset + len(new))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: {"partitions": []}, "footer: ValueError"),
    (lambda f: {"partitions": [["img000x", *f["partitions"][0][1:]]]}, "partition 0 does not match its footer"),
    (lambda f: {"partitions": [[*f["partitions"][0][:2], f["partitions"][0][2] - 1]]}, r"partition 0: (BadGzipFile|EOFError)"),
], ids=["no partitions", "first id", "partition size"])
def test_a_footer_that_does_not_match_the_object_is_an_integrity_error(loc, edit, message):
    info = with_footer(loc, written(loc), edit)
    with pytest.raises(IntegrityError, match=f"{info.key}.*{message}"):
        RunReader(loc).get(info, "img001")


def with_partition(loc, info, edit):
    """`info`'s run (one partition) with its partition JSON passed through `edit`."""
    footer = RunReader(loc).footer(info)
    (offset, size), = footer.partitions
    with open(loc.path(info.key), "rb") as f:
        blob = f.read()
    new = gzip.compress(json.dumps(edit(json.loads(gzip.decompress(blob[offset: offset + size])))).encode())
    tail = gzip.compress(json.dumps({"partitions": [[footer.first_ids[0], offset, len(new)]]}).encode())
    with open(loc.path(info.key), "wb") as f:
        f.write(blob[:offset] + new + tail)
    return dataclasses.replace(info, footer_offset=offset + len(new), footer_size=len(tail),
                               size=offset + len(new) + len(tail))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: {**f, "blocks": []}, "partition 0: ValueError"),
    (lambda f: {**f, "blocks": [[b[0], b[1], b[2], b[3] + 1] for b in f["blocks"]]}, "partition 0 block 1 does not match"),
    (lambda f: {**f, "blocks": [f["blocks"][0], ["img004x", *f["blocks"][1][1:]], *f["blocks"][2:]]},
     "partition 0 block 1 does not match its partition"),
    (lambda f: {**f, "blocks": [["img000x", *f["blocks"][0][1:]], *f["blocks"][1:]]}, "partition 0 does not match its footer"),
    (lambda f: {**f, "bloom": {**f["bloom"], "bits": f["bloom"]["bits"] * 2}}, "partition 0: ValueError"),
    (lambda f: {**f, "bloom": None}, "partition 0: TypeError"),
], ids=["no blocks", "row count", "block first id", "partition first id", "bloom size", "no bloom"])
def test_a_partition_that_does_not_match_the_object_is_an_integrity_error(loc, edit, message):
    info = with_partition(loc, written(loc), edit)
    with pytest.raises(IntegrityError, match=f"{info.key}.*{message}"):
        RunReader(loc).get(info, "img005")


def test_a_damaged_partition_is_an_integrity_error_and_other_partitions_still_read(loc):
    info = written(loc, n=40, block_rows=4, partition_blocks=2)  # partitions: img000.., img008.., ...
    offset, size = RunReader(loc).footer(info).partitions[1]
    damage(loc, info.key, offset + size // 2)
    reader = RunReader(loc)
    assert reader.get(info, "img001").id == "img001" and reader.get(info, "img016").id == "img016"
    with pytest.raises(IntegrityError, match=rf"{info.key} is unreadable \(partition 1: "):
        reader.get(info, "img009")
    with pytest.raises(IntegrityError, match=info.key):
        list(reader.scan(info))


def test_a_truncated_object_is_an_integrity_error_naming_it(loc):
    info = written(loc)
    os.truncate(loc.path(info.key), info.footer_offset + 10)
    with pytest.raises(IntegrityError, match=f"{info.key}.*truncated"):
        list(RunReader(loc).scan(info))


def test_a_missing_object_raises_file_not_found(loc):
    info = written(loc)
    os.remove(loc.path(info.key))
    with pytest.raises(FileNotFoundError):
        RunReader(loc).get(info, "img001")
    with pytest.raises(FileNotFoundError):
        list(RunReader(loc).scan(info))
