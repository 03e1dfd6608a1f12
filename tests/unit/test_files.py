import pytest

from cnnpipe.files import (
    atomic_dir,
    atomic_path,
    current_umask,
    read_json,
    write_csv,
    write_json,
)


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


def test_outputs_get_the_users_usual_permissions(tmp_path):
    write_json(tmp_path / "metrics.json", {"v": 1})
    with atomic_dir(tmp_path / "prepared") as tmp:
        (tmp / "images.npy").write_bytes(b"")
    mask = current_umask()
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "prepared").stat().st_mode & 0o777 == 0o777 & ~mask


def test_a_writer_sees_the_final_name(tmp_path):
    # torch.save records the name it writes to inside its archive: a temporary name
    # would make every save's bytes differ.
    with atomic_path(tmp_path / "best.pth") as tmp:
        assert tmp.name == "best.pth" and tmp.parent != tmp_path
        tmp.write_bytes(b"weights")
    assert [p.name for p in tmp_path.iterdir()] == ["best.pth"]
