"""Committed results carry no machine-specific absolute paths (brief; issue 16 part 5): every run
records paths relative to the project (runs.portable), and the committed runs were rewritten so."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flan_nb import config, runs

RESULTS = Path(__file__).resolve().parents[1] / "results"
ABSOLUTE = re.compile(r"""(?:^|[\s"'=:(\[,])/(?:work|tmp|root|home|Users|mnt|opt|var)/""", re.M)
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".tex", ".csv", ".yaml", ".txt"}


def _text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return raw
    nb = json.loads(raw)
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            for mime in [m for m in out.get("data", {}) if m.startswith("image/")]:
                del out["data"][mime]  # base64 pictures can contain "/tmp/" by chance
    return json.dumps(nb)


def committed_files() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*")
                  if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.suffix == ".ipynb"))


def test_committed_results_hold_no_absolute_paths() -> None:
    files = committed_files()
    if not files:
        pytest.skip("no committed results in this checkout")
    offenders = [f"{p.relative_to(RESULTS)}: {m.group(0).strip()}..." for p in files
                 if (m := ABSOLUTE.search(_text(p)))]
    assert not offenders, offenders[:10]


def test_portable_rewrites_the_checkout_and_its_parent(tmp_path, monkeypatch) -> None:
    root = config.project_root()
    text = json.dumps({"ckpt": f"{root}/artifacts/r/checkpoint/final",
                       "data": f"{root.parent}/shared/data/bbh", "hub": "google/flan-t5-small",
                       "elsewhere": "/opt/models/x"})
    out = json.loads(runs.portable(text))
    assert out["ckpt"] == "artifacts/r/checkpoint/final"
    assert out["data"] == "../shared/data/bbh"
    assert out["hub"] == "google/flan-t5-small"
    # a relative path resolves back to the same file
    assert config.resolve_path(out["ckpt"]) == root / "artifacts/r/checkpoint/final"
    assert config.resolve_path(out["data"]) == (root.parent / "shared/data/bbh").resolve()


def test_a_run_writes_portable_records(tmp_path) -> None:
    root = config.project_root()
    (tmp_path / "r").mkdir()
    run = runs.open_run(str(tmp_path / "r"), notebook="02_finetune")
    run.record_output("checkpoint_path", str(root / "artifacts" / "x" / "checkpoint" / "final"))
    run.write_metrics("train", {"mixture_path": str(root / "artifacts" / "x" / "mixture")})
    recorded = json.loads((run.path / "outputs.json").read_text(encoding="utf-8"))
    assert recorded["checkpoint_path"]["value"] == "artifacts/x/checkpoint/final"
    assert run.read_metrics()["train"]["mixture_path"] == "artifacts/x/mixture"
    # readers get a path that works from any working directory (kernels run in notebooks/)
    assert run.output("checkpoint_path") == str(root / "artifacts" / "x" / "checkpoint" / "final")
    assert run.outputs()["checkpoint_path"] == run.output("checkpoint_path")


def test_portable_hides_kernel_cell_files() -> None:
    text = '"/tmp/ipykernel_9126/1793894792.py:1: UserWarning: partial"'
    assert runs.portable(text) == '"<notebook cell 1793894792>:1: UserWarning: partial"'
