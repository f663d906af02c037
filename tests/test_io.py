"""Atomic writers: a failed write leaves the previous file or folder intact and no temp behind."""
import pytest

from freemask import io


def test_write_json_is_sorted_and_newline_terminated(tmp_path):
    io.write_json(tmp_path / "a" / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "a" / "m.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_failed_write_with_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "state.pt"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.write_with(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_replace_dir_swaps_whole_folder_and_survives_failed_writer(tmp_path):
    out = tmp_path / "model"
    io.replace_dir(out, lambda d: (d.mkdir(), (d / "w.txt").write_text("v1")))
    io.replace_dir(out, lambda d: (d.mkdir(), (d / "w.txt").write_text("v2")))
    assert (out / "w.txt").read_text() == "v2"

    def broken(d):
        d.mkdir()
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        io.replace_dir(out, broken)
    assert (out / "w.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
