"""Writing a mixture to disk (Arrow shards in the `datasets.load_from_disk` layout) and the
notebook's tables of its manifest; `MixingError` is the mixing stage's error.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class MixingError(ValueError):
    """Invalid mixing parameters or a task that cannot be mixed; the message says which."""

# ---------------------------------------------------------------------------------------------
# Writing: Arrow shards + state.json/dataset_info.json (datasets.load_from_disk layout)


def _features():
    import datasets

    return datasets.Features({
        "inputs": datasets.Value("string"), "targets": datasets.Value("string"),
        "task": datasets.Value("string"), "collection": datasets.Value("string"),
        "format": datasets.Value("string"), "cot": datasets.Value("bool"),
        "template_id": datasets.Value("string"), "example_id": datasets.Value("string"),
    })


def write_arrow(batches: Iterator[dict[str, list[Any]]], out_dir: Path, *, total: int,
                shard_size: int = 200_000, progress: bool = True) -> list[Path]:
    """Write column batches into `data-XXXXX-of-YYYYY.arrow` shards (datasets' on-disk layout).

    Memory holds one batch at a time; a batch never straddles a shard (shard_size is a multiple of
    the batch size), so shard boundaries, and therefore the bytes, depend only on `total`.
    """
    import pyarrow as pa
    from datasets.arrow_writer import ArrowWriter
    from tqdm.auto import tqdm

    features = _features()
    schema = features.arrow_schema
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("data-*.arrow"):
        old.unlink()
    n_shards = max(1, math.ceil(total / shard_size))
    paths = [out_dir / f"data-{i:05d}-of-{n_shards:05d}.arrow" for i in range(n_shards)]
    bar = tqdm(total=total, desc="writing mixture", unit="ex", disable=not progress, mininterval=2)
    written, shard, in_shard = 0, 0, 0
    writer = ArrowWriter(features=features, path=str(paths[0]))
    for batch in batches:
        n = len(batch["inputs"])
        if in_shard + n > shard_size:
            raise MixingError(f"batch of {n} rows straddles shard {shard} (shard_size {shard_size})")
        writer.write_table(pa.table(batch, schema=schema))
        written += n
        in_shard += n
        bar.update(n)
        if in_shard == shard_size and written < total:
            writer.finalize()
            writer.close()
            shard, in_shard = shard + 1, 0
            writer = ArrowWriter(features=features, path=str(paths[shard]))
    writer.finalize()
    writer.close()
    bar.close()
    if written != total:
        raise MixingError(f"mixture stream ended after {written} of {total} rows")
    fingerprint = sha256_files(paths)[:16]
    state = {"_data_files": [{"filename": p.name} for p in paths], "_fingerprint": fingerprint,
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": None}
    (out_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    info = {"citation": "", "description": "flan_nb mixture", "features": features.to_dict(),
            "homepage": "", "license": ""}
    (out_dir / "dataset_info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return paths


def sha256_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Tables for the notebook


def collection_table(manifest: Mapping[str, Any]):
    import pandas as pd

    rows = [{"collection": c, "planned": v["planned_fraction"] * 100, "realized": v["realized_fraction"] * 100,
             "tasks": v["tasks"], "examples": v["realized"]} for c, v in manifest["per_collection"].items()]
    return pd.DataFrame(rows)


def task_table(manifest: Mapping[str, Any], top: int = 20):
    import pandas as pd

    df = pd.DataFrame([{"task": k, **v} for k, v in manifest["per_task"].items()])
    return df.sort_values(["realized", "task"], ascending=[False, True]).head(top).reset_index(drop=True)


def format_table(manifest: Mapping[str, Any]):
    import pandas as pd

    rows = [{"collection": c, "format": f, "count": n}
            for c, fm in manifest["format_by_collection"].items() for f, n in fm.items()]
    return pd.DataFrame(rows)


def sample_table(manifest: Mapping[str, Any]):
    import pandas as pd

    return pd.DataFrame([{"format": k, **v} for k, v in manifest["samples"].items()])
