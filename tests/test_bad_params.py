"""Issue 16 section 1 and issue 13 part 5: every malformed params file is refused at resolve time,
before a run directory exists, by a message naming the file and the key; YAML 1.2 numbers load.

The sweep runs `flan-nb run` on the real notebooks' parameters cells (no model is loaded, no
notebook runs), so it is fast.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from flan_nb import cli, config, pipeline, value_checks, yaml_io

BASE = {
    "01_data_mixing": {},
    "02_finetune": {"lr": "5e-4"},
    "04_eval_bbh": {"model": "builtin:micro-t5", "data": "synthetic"},
    "07_tables": {},
    "08_scaling": {},
    "00_walkthrough": {},
}


def params_text(notebook: str = "", override: str = "", extra_notebook: str = "") -> str:
    """A valid params file with `override` (YAML flow-mapping body) set in one section."""
    lines = ["experiment: bad-sweep", "notebooks:"]
    for nb, section in BASE.items():
        body = ", ".join(f"{k}: {v}" for k, v in section.items())
        if nb == notebook:
            body = ", ".join(x for x in (body, override) if x)
        lines.append(f"  {nb}: {{{body}}}")
    if extra_notebook:
        lines.append(f"  {extra_notebook}: {{}}")
    return "\n".join(lines) + "\n"


# (case id, params file text or bytes, key the message must name with the file, or a regex)
CASES: list[tuple[str, str | bytes, str]] = [
    # 02_finetune: values
    ("steps-negative", params_text("02_finetune", "steps: -5"), "steps"),
    ("steps-zero", params_text("02_finetune", "steps: 0"), "steps"),
    ("dropout-1.5", params_text("02_finetune", "dropout: 1.5"), "dropout"),
    ("dropout-negative", params_text("02_finetune", "dropout: -0.1"), "dropout"),
    ("lr-nan-word", params_text("02_finetune", "lr: nan").replace("lr: 5e-4, ", ""), "lr"),
    ("lr-.nan", params_text("02_finetune", "lr: .nan").replace("lr: 5e-4, ", ""), "lr"),
    ("lr-1e99", params_text("02_finetune", "lr: 1.0e+99").replace("lr: 5e-4, ", ""), "lr"),
    ("lr-.inf", params_text("02_finetune", "lr: .inf").replace("lr: 5e-4, ", ""), "lr"),
    ("lr-negative", params_text("02_finetune", "lr: -1e-3").replace("lr: 5e-4, ", ""), "lr"),
    ("lr-zero", params_text("02_finetune", "lr: 0").replace("lr: 5e-4, ", ""), "lr"),
    ("lr-word", params_text("02_finetune", "lr: fast").replace("lr: 5e-4, ", ""), "lr"),
    ("batch-zero", params_text("02_finetune", "batch_size: 0"), "batch_size"),
    ("batch-indivisible", params_text("02_finetune", "batch_size: 7, grad_accum: 2"), "batch_size"),
    ("precision", params_text("02_finetune", "precision: fp8"), "precision"),
    ("fp16-for-t5", params_text("02_finetune", "precision: fp16"), "precision"),
    ("packing", params_text("02_finetune", "packing: zigzag"), "packing"),
    ("truncation", params_text("02_finetune", "truncation: maybe"), "truncation"),
    ("checkpoint-every", params_text("02_finetune", "checkpoint_every: -1"), "checkpoint_every"),
    ("clip-inf", params_text("02_finetune", "clip_grad_norm: .inf"), "clip_grad_norm"),
    ("model-missing-dir", params_text("02_finetune", "model: ./no/such/model"), "model"),
    ("model-unknown-builtin", params_text("02_finetune", "model: 'builtin:huge-t5'"), "model"),
    ("model-missing-gguf", params_text("02_finetune", "model: /no/such/m.gguf"), "model"),
    ("init-checkpoint", params_text("02_finetune", "init_checkpoint: /no/such/ckpt"),
     "init_checkpoint"),
    ("mixture-path", params_text("02_finetune", "mixture_path: no/such/mixture"), "mixture_path"),
    # 02_finetune: types and names
    ("unknown-key", params_text("02_finetune", "stesp: 3"), "stesp"),
    ("steps-string", params_text("02_finetune", "steps: '10'"), "steps"),
    ("steps-float", params_text("02_finetune", "steps: 1.5"), "steps"),
    ("list-for-bool", params_text("02_finetune", "tensorboard: [1]"), "tensorboard"),
    ("injected-key", params_text("02_finetune", "run_dir: x"), "run_dir"),
    # 01_data_mixing
    ("preset-unknown", params_text("01_data_mixing", "preset: flan2023"), "preset"),
    ("rates-negative", params_text("01_data_mixing", "rates: {muffin: -1, niv2: 2}"), "rates"),
    ("rates-all-zero", params_text("01_data_mixing", "rates: {muffin: 0, niv2: 0}"), "rates"),
    ("rates-unknown", params_text("01_data_mixing", "rates: {flan: 1}"), "rates"),
    ("rates-nan", params_text("01_data_mixing", "rates: {muffin: .nan}"), "rates"),
    ("num-examples", params_text("01_data_mixing", "num_examples: 0"), "num_examples"),
    ("fs-fraction", params_text("01_data_mixing", "fs_fraction: 1.5"), "fs_fraction"),
    ("cot-fraction", params_text("01_data_mixing", "cot_fraction: -0.2"), "cot_fraction"),
    ("caps-negative", params_text("01_data_mixing", "caps: {muffin: -5}"), "caps"),
    ("mixing-data-root", params_text("01_data_mixing", "data_root: /no/such/data"), "data_root"),
    ("workers", params_text("01_data_mixing", "workers: 0"), "workers"),
    # 04_eval_bbh
    ("setting-cott", params_text("04_eval_bbh", "settings: [cott]"), "settings"),
    ("setting-repeat", params_text("04_eval_bbh", "settings: [direct, direct]"), "settings"),
    ("eval-data", params_text("04_eval_bbh", "data: ofline").replace("data: synthetic, ", ""),
     "data"),
    ("eval-batch", params_text("04_eval_bbh", "batch_size: 0"), "batch_size"),
    ("sc-temperature", params_text("04_eval_bbh", "sc_temperature: .inf"), "sc_temperature"),
    ("eval-dtype", params_text("04_eval_bbh", "dtype: float16"), "dtype"),
    ("eval-data-root", params_text("04_eval_bbh", "data_root: /no/such/mirror"), "data_root"),
    ("eval-model-path", params_text("04_eval_bbh", "model: ../no_such_model_dir").replace(
        "model: builtin:micro-t5, ", ""), "model"),
    ("max-per-subtask", params_text("04_eval_bbh", "max_per_subtask: -1"), "max_per_subtask"),
    # other notebooks
    ("paper-rows", params_text("07_tables", "paper_rows: some"), "paper_rows"),
    ("plots", params_text("08_scaling", "plots: [nope]"), "plots"),
    ("walkthrough-lr", params_text("00_walkthrough", "learning_rate: 2.0"), "learning_rate"),
    ("walkthrough-steps", params_text("00_walkthrough", "train_steps: 0"), "train_steps"),
    # the file itself
    ("duplicate-key", "experiment: x\nnotebooks:\n  02_finetune:\n    lr: 1e-3\n    steps: 3\n"
                      "    lr: 5e-4\n", r"duplicate key `lr` at line 6 \(first given at line 4\)"),
    ("duplicate-notebook", "experiment: x\nnotebooks:\n  02_finetune: {}\n  02_finetune: {}\n",
     r"duplicate key `02_finetune` at line 4"),
    ("not-utf8", b"experiment: x\nnotebooks:\n  02_finetune: {model: caf\xe9}\n",
     r"not UTF-8: byte 0xe9 at offset 51 \(line 3\)"),
    ("latin1-comment", b"# r\xe9sum\xe9\nexperiment: x\nnotebooks: {02_finetune: {}}\n",
     r"not UTF-8: .* \(line 1\)"),
    ("unknown-notebook", params_text(extra_notebook="09_nope"), "09_nope"),
    ("unknown-top-level", "experiment: x\nseed: 1\nnotebooks: {02_finetune: {}}\n", "seed"),
    ("notebooks-list", "experiment: x\nnotebooks: [02_finetune]\n", "notebooks"),
    ("no-notebooks", "experiment: x\nnotebooks: {}\n", r"names no notebooks"),
    ("top-level-list", "- experiment\n", r"top level must be a mapping"),
    ("yaml-syntax", "experiment: x\nnotebooks: {02_finetune: {steps: 3}\n", r"line \d+"),
    ("section-not-mapping", "experiment: x\nnotebooks:\n  02_finetune: [1, 2]\n",
     "notebooks.02_finetune"),
    ("missing-experiment", "notebooks: {02_finetune: {}}\n", "experiment"),
]


def _message_names(message: str, path: Path, key: str) -> bool:
    if str(path) not in message:
        return False
    if re.fullmatch(r"[A-Za-z0-9_.]+", key):
        return f"`{key}`" in message or f"{key}:" in message or f"{key}=" in message
    return re.search(key, message) is not None


@pytest.mark.parametrize("case,body,key", CASES, ids=[c[0] for c in CASES])
def test_bad_params_file_refused_before_any_run(tmp_path, capsys, case, body, key):
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    results = tmp_path / "results"
    code = cli.main(["--results", str(results), "run", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err  # one line, no traceback
    assert _message_names(lines[0], path, key), lines[0]
    assert not results.exists() or not any(results.iterdir()), "a run directory was created"


def test_the_sweep_is_at_least_forty_files():
    assert len(CASES) >= 40


def test_messages_name_notebook_for_value_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(params_text("02_finetune", "dropout: 1.5"))
    with pytest.raises(config.ParamsError) as err:
        pipeline.resolve(config.load_params_file(path), str(path))
    assert "notebook 02_finetune" in str(err.value) and "`dropout`" in str(err.value)


def test_the_base_file_is_valid_and_reads_scientific_notation(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(params_text("02_finetune", "lr: 2E-5").replace("lr: 5e-4, ", ""))
    resolved = pipeline.resolve(config.load_params_file(path), str(path))
    assert resolved["notebooks"]["02_finetune"]["lr"] == 2e-5


# ---------------------------------------------------------------------------------------------
# The YAML loader (issue 13 part 5)


@pytest.mark.parametrize("text,value", [
    ("5e-4", 5e-4), ("1e-3", 1e-3), ("2E-5", 2e-5), (".5e-3", 5e-4), ("1.0e+99", 1e99),
    ("1e3", 1000.0), ("-.5", -0.5), ("+1.5E2", 150.0), ("1.0e99", 1e99), ("3e0", 3.0),
])
def test_yaml_12_floats(text, value):
    loaded = yaml_io.load_text(f"lr: {text}")["lr"]
    assert isinstance(loaded, float) and loaded == value


@pytest.mark.parametrize("text,value", [
    ("fast", "fast"), ("nan", "nan"), ("e5", "e5"), ("1e", "1e"), ("3", 3), ("1_000", 1000),
    ("0.5", 0.5), ("true", True), ("'5e-4'", "5e-4"), ("1.2.3", "1.2.3"),
])
def test_yaml_other_scalars_unchanged(text, value):
    loaded = yaml_io.load_text(f"v: {text}")["v"]
    assert loaded == value and type(loaded) is type(value)


def test_plain_pyyaml_still_reads_5e_4_as_a_string():
    # the reason for yaml_io: if this ever changes, the custom resolver can go
    assert yaml.safe_load("lr: 5e-4")["lr"] == "5e-4"


def test_lr_word_keeps_the_type_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("experiment: x\nnotebooks: {02_finetune: {lr: fast}}\n")
    with pytest.raises(config.ParamsError, match=r"`lr`.* must be float, got str 'fast'"):
        pipeline.resolve(config.load_params_file(path), str(path))


def test_merge_keys_are_not_duplicates():
    doc = yaml_io.load_text("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n")
    assert doc["b"] == {"k": 3, "j": 2}


def test_every_project_yaml_goes_through_yaml_io():
    root = Path(__file__).resolve().parents[1] / "flan_nb"
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "yaml_io.py" and re.search(r"yaml\.(safe_)?load\(",
                                                          p.read_text(encoding="utf-8"))]
    assert not offenders


def test_every_bundled_yaml_loads_with_yaml_io():
    from flan_nb.data import promptsource

    root = Path(__file__).resolve().parents[1]
    files = [*(root / "flan_nb" / "resources").rglob("*.yaml"), *(root / "params").rglob("*.yaml")]
    assert len(files) > 20
    for path in files:
        try:
            yaml_io.load_file(path)
        except yaml.constructor.ConstructorError:  # promptsource's !Template tags
            promptsource.read_promptsource_yaml(path)


def test_value_checks_cover_every_notebook():
    for notebook in pipeline.NOTEBOOK_PARAMS:
        assert notebook in value_checks.CHECKS or "_eval_" in notebook, notebook
