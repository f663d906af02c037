import numpy as np
import pytest

from freemask.data import shards, voc


def _samples(n):
    r = np.random.default_rng(1)
    return [(f"{i:04d}", {"image.png": r.integers(0, 255, (8, 8, 3), dtype=np.uint8),
                          "label.png": r.integers(0, 3, (8, 8), dtype=np.uint8), "meta.json": {"i": i}}) for i in range(n)]


def test_shards_are_byte_identical_and_round_trip(tmp_path):
    s = _samples(5)
    shards.write_shard(tmp_path / "a.tar", s)
    shards.write_shard(tmp_path / "b.tar", s)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    back = list(shards.read_shard(tmp_path / "a.tar"))
    assert [k for k, _ in back] == [k for k, _ in s]
    assert np.array_equal(back[2][1]["image.png"], s[2][1]["image.png"]) and back[2][1]["meta.json"] == {"i": 2}
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_keys_and_missing_shards_are_named(tmp_path):
    with pytest.raises(ValueError, match="a.b"):
        shards.write_shard(tmp_path / "x.tar", [("a.b", {"meta.json": {}})])
    with pytest.raises(FileNotFoundError, match="no shards"):
        shards.shard_paths(tmp_path / "empty")


def test_voc_palette_matches_the_standard_colours():
    pal = voc.voc_palette()
    assert pal[3:6] == [128, 0, 0] and pal[6:9] == [0, 128, 0] and pal[15 * 3:16 * 3] == [192, 128, 128]


def test_voc_reader_names_missing_files(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    voc.write_sample(tmp_path, "x", img, np.full((4, 4), 255, np.uint8))
    voc.write_split(tmp_path, "val", ["x"])
    ds = voc.VOCSegmentation(tmp_path, "val")
    assert (ds[0][2] == 255).all()
    # a listed sample without files stops the reader before it reads anything
    voc.write_split(tmp_path, "val", ["x", "y"])
    with pytest.raises(FileNotFoundError, match="y.jpg"):
        voc.VOCSegmentation(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="train.txt"):
        voc.VOCSegmentation(tmp_path, "train")
