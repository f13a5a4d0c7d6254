"""Every notebook follows the contract, and every params file validates against the notebooks."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import nbformat
import pytest

from flan_nb import config, pipeline, value_checks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PARAMS = sorted(p for p in (ROOT / "params").glob("*.yaml"))


def test_there_are_notebooks_and_params():
    assert NOTEBOOKS and PARAMS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    assert path.stem in pipeline.NOTEBOOK_PARAMS, f"{path.name} has no params class in pipeline"
    nb = nbformat.read(str(path), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell tagged parameters"
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs") and not cell.get("execution_count"), (
            f"{path.name}: source notebooks are committed without outputs")
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef,
                                                               ast.AsyncFunctionDef))]
        assert not defs, f"{path.name}: no def/class in notebooks (logic lives in flan_nb/)"
    cls = pipeline.params_class(path.stem)
    cell = config.parameters_cell(path)
    fields = [f.name for f in dataclasses.fields(cls)]
    assert sorted(cell) == sorted(fields), (
        f"{path.name}: parameters cell {sorted(cell)} != {cls.__name__} fields {sorted(fields)}")
    # defaults must type-check; None marks a required value
    config.check_values(cls, {k: v for k, v in cell.items() if v is not None},
                        notebook=path.stem, require_all=False)
    assert cell["run_dir"] == "" and cell["params_file"] == ""


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.stem)
def test_params_file_validates(path, monkeypatch):
    if not (config.project_root().parent / "shared" / "data").is_dir():
        # committed files name the data mirror next to the main checkout (../shared/data); from
        # a checkout elsewhere only that existence check is left out
        monkeypatch.setattr(value_checks, "DIRECTORY_KEYS", ())
    resolved = pipeline.resolve(config.load_params_file(path), str(path))
    assert resolved["notebooks"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path):
    # papermill's own parser gives up on a line whose comment holds '=' and then treats the
    # injected value as an unknown parameter; keep every declared name visible to it
    import papermill

    seen = papermill.inspect_notebook(str(path))
    assert sorted(seen) == sorted(config.parameters_cell(path)), path.name
