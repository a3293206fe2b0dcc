"""Store edges (issue 10, item 4): a damaged local folder is refused with a message naming the
file and what to do, never opened as an empty collection; reading needs no dim=."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from qdrant_client import QdrantClient

import llmweb_plugin as lw
from llmweb_plugin.store import Record


def _write(folder, n=3, dim=5, collection=None, distance=None, run_id="r"):
    """n records with known vectors; returns the vectors."""
    vecs = np.arange(1, n * dim + 1, dtype=np.float32).reshape(n, dim)
    with lw.WebStore(folder, embedder=None, dim=dim, collection=collection,
                     distance=distance) as s:
        s.upsert([Record(text=f"t{i}", run_id=run_id, agent=f"a{i % 2}", step=1, index=i,
                         vector=v) for i, v in enumerate(vecs)])
    return vecs


def _data_file(folder, collection="llmweb__vectors-5"):
    return folder / "collection" / collection / "storage.sqlite"


# ---------------------------------------------------------------- damaged meta.json
@pytest.mark.parametrize("garbage", [b"{garbage", b"[]", b'{"aliases": {}}', b"\xff\xfe\x00"])
def test_unreadable_meta_json_names_the_file_and_what_to_do(tmp_path, garbage):
    folder = tmp_path / "store"
    _write(folder)
    (folder / "meta.json").write_bytes(garbage)
    with pytest.raises(ValueError) as err:
        lw.WebStore(folder, embedder=None, dim=5)
    msg = str(err.value)
    assert "damaged" in msg and repr(os.fspath(folder / "meta.json")) in msg
    assert "Restore it from a backup" in msg and "delete it" in msg
    assert (folder / "meta.json").read_bytes() == garbage  # nothing was rewritten
    # the remedy the message gives works, and no record was lost
    (folder / "meta.json").unlink()
    with lw.WebStore(folder, embedder=None, dim=5) as s:
        assert s.count("r") == 3


# ---------------------------------------------------------------- missing data file
@pytest.mark.parametrize("damage,said", [
    ("delete", "is missing"), ("truncate", "is empty"), ("scribble", "is not an SQLite database")])
def test_damaged_storage_sqlite_is_refused_not_opened_empty(tmp_path, damage, said):
    folder = tmp_path / "store"
    _write(folder)
    data = _data_file(folder)
    if damage == "delete":
        data.unlink()
    elif damage == "truncate":
        data.write_bytes(b"")
    else:
        data.write_bytes(b"not a database at all" * 10)
    for _ in range(2):  # refused every time: the first attempt must not paper over the damage
        with pytest.raises(ValueError) as err:
            lw.WebStore(folder, embedder=None, dim=5)
        msg = str(err.value)
        assert f"{os.fspath(data)!r} {said}" in msg
        assert "'llmweb__vectors-5'" in msg and "Restore that file from a backup" in msg
    assert data.exists() == (damage != "delete")
    # reading without dim= is refused the same way
    with pytest.raises(ValueError, match=said):
        lw.WebStore(folder, embedder=None)


def test_missing_data_file_of_another_collection_is_refused_too(tmp_path):
    # qdrant-client opens every listed collection: it would recreate that one empty as well
    folder = tmp_path / "store"
    _write(folder)
    _write(folder, collection="other")
    _data_file(folder, "other").unlink()
    with pytest.raises(ValueError, match=r"collection 'other'.*other/storage\.sqlite' is missing"):
        lw.WebStore(folder, embedder=None, dim=5)


def test_giving_up_a_lost_collection_as_the_message_says(tmp_path):
    folder = tmp_path / "store"
    _write(folder)
    _write(folder, collection="other")
    _data_file(folder).unlink()
    meta = json.loads((folder / "meta.json").read_text())
    del meta["collections"]["llmweb__vectors-5"]
    (folder / "meta.json").write_text(json.dumps(meta))
    _data_file(folder).parent.rmdir()
    with lw.WebStore(folder, embedder=None, dim=5) as s:      # starts that collection afresh
        assert s.count() == 0
    with lw.WebStore(folder, embedder=None, dim=5, collection="other") as s:
        assert s.count("r") == 3                              # the intact one kept its records


def test_intact_folder_still_opens_and_a_new_folder_is_created(tmp_path):
    _write(tmp_path / "a")
    with lw.WebStore(tmp_path / "a", embedder=None, dim=5) as s:
        assert s.count("r") == 3
    with lw.WebStore(tmp_path / "new", embedder=None, dim=5) as s:
        assert s.count() == 0 and (tmp_path / "new" / "meta.json").exists()


# ---------------------------------------------------------------- reading without dim=
def test_reading_takes_size_and_distance_from_the_collection(tmp_path):
    folder = tmp_path / "store"
    vecs = _write(folder, dim=5, collection="llmweb__all-MiniLM-L6-v2", distance="euclid")
    with lw.WebStore(folder, embedder=None) as s:
        assert (s.collection, s.dim, s.distance.value) == ("llmweb__all-MiniLM-L6-v2", 5, "Euclid")
        recs = sorted(s.records("r", with_vectors=True), key=lambda r: r.index)
        assert [r.text for r in recs] == ["t0", "t1", "t2"]
        np.testing.assert_array_equal(np.stack([r.vector for r in recs]), vecs)
        hit = s.search(vecs[2], k=1)
        assert hit[0].text == "t2"
        s.upsert([Record(text="t3", run_id="r", agent="a1", step=2, vector=np.ones(5))])
        assert s.count("r") == 4
    with lw.WebStore(folder, embedder=None, collection="llmweb__all-MiniLM-L6-v2") as s:
        assert s.dim == 5 and s.count("r") == 4


def test_reading_through_a_given_client(tmp_path):
    client = QdrantClient(":memory:")
    with lw.WebStore(client=client, embedder=None, dim=7, collection="c") as s:
        s.upsert([Record(text="x", run_id="r", agent="a", step=1, vector=np.ones(7))])
    with lw.WebStore(client=client, embedder=None, collection="c") as s:
        assert s.dim == 7 and [r.text for r in s.records("r")] == ["x"]
    client.close()


def test_reading_without_dim_fails_clearly_when_there_is_nothing_to_pick(tmp_path):
    folder = tmp_path / "store"
    with pytest.raises(ValueError, match="no Qdrant folder at .* to read"):
        lw.WebStore(folder, embedder=None)
    assert not folder.exists()                       # a read creates nothing
    with pytest.raises(ValueError, match=r"no llmweb collections in this in-memory Qdrant.*dim="):
        lw.WebStore(":memory:", embedder=None)
    _write(folder, dim=5)
    _write(folder, dim=6)
    with pytest.raises(ValueError, match=r"several llmweb collections .*'llmweb__vectors-5', "
                                         r"'llmweb__vectors-6'.*collection=NAME"):
        lw.WebStore(folder, embedder=None)
    with pytest.raises(ValueError, match=r"collection 'nope' does not exist .*'llmweb__vectors-5'"):
        lw.WebStore(folder, embedder=None, collection="nope")
    with pytest.raises(ValueError, match="holds 5-d vectors with Cosine distance.*Dot"):
        lw.WebStore(folder, embedder=None, collection="llmweb__vectors-5", distance="dot")
    with lw.WebStore(folder, embedder=None, collection="llmweb__vectors-6") as s:  # lock released
        assert s.dim == 6 and s.count("r") == 3
        assert not s.client.collection_exists("nope")
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="dim must be a positive vector size"):
            lw.WebStore(":memory:", embedder=None, dim=bad)


def test_reading_without_dim_points_at_collections_meta_json_forgot(tmp_path):
    folder = tmp_path / "store"
    _write(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(ValueError, match=r"does not list: 'llmweb__vectors-5'; pass collection=NAME "
                                         r"and dim="):
        lw.WebStore(folder, embedder=None)
    with lw.WebStore(folder, embedder=None, dim=5) as s:   # the way back the message gives
        assert s.count("r") == 3
