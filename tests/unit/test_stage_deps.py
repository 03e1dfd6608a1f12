"""dvc.yaml's deps cover every project module each stage imports, directly or through
other modules, function-local imports included: a change to any of them re-runs it."""

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
DYNAMIC = {
    # The registry imports a family's module by name when it builds one of its networks.
    SRC / "cnnpipe/models/__init__.py": sorted((SRC / "cnnpipe/models").glob("*.py")),
    # The MLflow classifier is logged as code: its file is read, not imported.
    SRC / "cnnpipe/mlflow_models.py": [SRC / "cnnpipe/mlflow_classifier.py"],
}


def module_file(name: str) -> Path | None:
    """cnnpipe.a.b -> src/cnnpipe/a/b.py or src/cnnpipe/a/b/__init__.py, if it exists."""
    path = SRC.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Every cnnpipe module that `path` imports, wherever in the file the import sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from cnnpipe import tracking` imports a module, not a name in a module.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] == "cnnpipe" and module_file(n)}


def project_files(script: Path) -> set[str]:
    """The files of every project module `script` loads, its packages' __init__.py included."""
    seen, todo = set(), [script]
    while todo:
        current = todo.pop()
        found = []
        for name in imported_names(current):
            parts = name.split(".")
            # importing a.b.c runs a and a.b first
            found += [module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
        for file in found + DYNAMIC.get(current, []):
            if file not in seen:
                seen.add(file)
                todo.append(file)
    return {str(f.relative_to(REPO)) for f in seen}


def covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_deps_cover_every_imported_module(name):
    stage = STAGES[name]
    script = stage["cmd"].split()[-1]
    assert script.startswith("stages/") and script.endswith(".py"), stage["cmd"]
    deps = stage["deps"]
    assert script in deps, f"{name}: its own script {script} is not in its deps"
    imported = project_files(REPO / script)
    missing = sorted(f for f in imported if not covered(f, deps))
    assert not missing, f"dvc.yaml stage '{name}' imports but does not list: {', '.join(missing)}"
    # And no more: a source dep the stage never loads would re-run it for nothing (a change
    # to study or figure code must not retrain).
    unused = [
        d for d in deps if d.startswith("src/") and not any(covered(f, [d]) for f in imported)
    ]
    assert not unused, f"dvc.yaml stage '{name}' lists but never imports: {', '.join(unused)}"


def test_no_stage_before_evaluate_depends_on_study_or_figure_code():
    for name in ("prepare", "split", "train"):
        deps = STAGES[name]["deps"]
        assert not [d for d in deps if d.startswith(("src/cnnpipe/studies", "src/cnnpipe/plots"))]


def test_import_walk_follows_function_local_and_package_imports():
    files = project_files(REPO / "stages/train.py")
    assert "src/cnnpipe/__init__.py" in files
    assert "src/cnnpipe/models/lenet.py" in files  # reached only through the registry
    assert "src/cnnpipe/config/__init__.py" in files


def pipeline_paths() -> set[str]:
    """Every file or folder dvc.yaml passes between stages."""
    found = set()
    for stage in STAGES.values():
        for kind in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                found.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return {p for p in found if p.startswith(("data/", "models/", "metrics/"))}


def test_every_path_the_stages_share_is_named_once_in_paths_py():
    from cnnpipe import paths

    named = {v for k, v in vars(paths).items() if k.isupper()}
    unnamed = sorted(
        p for p in pipeline_paths() if p not in named and not p.startswith(paths.INSPECT + "/")
    )
    assert not unnamed, f"dvc.yaml paths not named in src/cnnpipe/paths.py: {unnamed}"
    literal = re.compile(r"[\"'](?:data|models|metrics)/")
    written_again = [
        str(f.relative_to(REPO))
        for f in [*(REPO / "stages").glob("*.py"), *(SRC / "cnnpipe").rglob("*.py")]
        if f.name != "paths.py" and literal.search(f.read_text(encoding="utf-8"))
    ]
    assert not written_again, f"write these paths as cnnpipe.paths names: {written_again}"
