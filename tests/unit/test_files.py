import pytest

from cnnpipe.files import atomic_dir, atomic_path, read_json, write_csv, write_json


def test_failed_write_leaves_the_old_file_and_no_temporaries(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_directory_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "prepared"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    with atomic_dir(target) as tmp:
        (tmp / "c").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]


def test_csv_has_a_header_and_keeps_unicode(tmp_path):
    write_csv(tmp_path / "t.csv", [{"class": "向日葵", "f1": 0.5}, {"class": "rose", "f1": 1}])
    assert (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines() == [
        "class,f1",
        "向日葵,0.5",
        "rose,1",
    ]
