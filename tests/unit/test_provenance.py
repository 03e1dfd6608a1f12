import subprocess

from cnnpipe.tracking.provenance import changed_sources, run_tags


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def committed_repo(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python train.py\n    metrics:\n"
        "      - metrics/train.json:\n          cache: false\n"
    )
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/train.json").write_text("{}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return tmp_path


def test_the_pipelines_own_outputs_do_not_make_the_tree_dirty(tmp_path):
    repo = committed_repo(tmp_path)
    # DVC deletes a stage's committed metrics before it runs the stage.
    (repo / "metrics/train.json").unlink()
    assert changed_sources(repo) == []
    assert run_tags(repo)["git.dirty"] == "false"


def test_an_edited_source_file_makes_the_tree_dirty(tmp_path):
    repo = committed_repo(tmp_path)
    (repo / "train.py").write_text("print('changed')\n")
    assert changed_sources(repo) == ["train.py"]
    assert run_tags(repo)["git.dirty"] == "true"
