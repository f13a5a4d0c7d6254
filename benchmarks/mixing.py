"""Mixing throughput: build a 1,000,000-example `offline_real` mixture, print examples/s and peak RSS.

Targets: >= 20,000 examples/s for the mixing stage and < 2 GiB peak RSS. Usage:
    FLAN_NB_DATA=../shared/data .venv/bin/python benchmarks/mixing.py [--num-examples N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _rss_sampler(stop: threading.Event, peak: list[int]) -> None:
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        # with --workers > 1 the forked renderers count too (their RSS shares pages, so this
        # sum overstates the true footprint; it is an upper bound)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)
        stop.wait(0.2)


def main(argv: list[str] | None = None) -> int:
    from flan_nb import config
    from flan_nb.data import mixing, registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-examples", type=int, default=1_000_000)
    parser.add_argument("--preset", default="offline_real")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--out", default="", help="output dir (default: a temp dir, deleted after)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes (bytes do not depend on it)")
    args = parser.parse_args(argv)

    root = config.data_root(args.data_root) or (config.project_root().parent / "shared" / "data")
    if not root.is_dir():
        print(f"data root {root} not found; set FLAN_NB_DATA", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="flan_nb_mixbench_"))
    peak = [0]
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(stop, peak), daemon=True)
    sampler.start()

    t0 = time.perf_counter()
    cfg = mixing.MixingParams(
        seed=args.seed, preset=args.preset, num_examples=args.num_examples, rates={}, caps={},
        fs_fraction=0.5, opt_fraction=0.5, cot_fraction=0.5, max_exemplars=3, max_input_tokens=512,
        synthetic_examples_per_family=2000, max_examples_per_task=0, contamination=False,
        workers=args.workers, data_root=str(root), run_dir="", params_file="")
    # mixing.build_mixture's steps, unrolled so loading and mixing are timed apart
    preset, rates, caps = mixing.resolve(cfg)
    tasks, _ = mixing.select_tasks(preset, registry.load_registry(), root)
    task_data, report = mixing.load_task_data(tasks, root, seed=cfg.seed,
                                              synthetic_n=cfg.synthetic_examples_per_family,
                                              max_examples_per_task=cfg.max_examples_per_task,
                                              progress=False)
    t1 = time.perf_counter()
    ratios = mixing.FormatRatios(cfg.fs_fraction, cfg.opt_fraction, cfg.cot_fraction,
                                 cfg.max_exemplars, cfg.max_input_tokens)
    manifest = mixing.mix(task_data, rates=rates, caps=caps, num_examples=cfg.num_examples,
                          seed=cfg.seed, ratios=ratios, out_dir=out / "mixture",
                          workers=cfg.workers, progress=False)
    t2 = time.perf_counter()
    stop.set()
    sampler.join()
    max_rss = max(peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    size = sum(p.stat().st_size for p in (out / "mixture").glob("*.arrow"))
    n = manifest["num_examples"]
    print(f"preset={args.preset} workers={args.workers} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} tasks={len(task_data)} raw_examples={sum(len(t.rows) for t in task_data)} "
          f"bad_rows={report['bad_rows']}")
    print(f"load: {t1 - t0:.1f} s; mix+write: {t2 - t1:.1f} s for {n:,} examples")
    print(f"throughput (mix+write): {n / (t2 - t1):,.0f} examples/s; end-to-end: {n / (t2 - t0):,.0f} examples/s")
    print(f"peak RSS: {max_rss / 2**30:.2f} GiB; arrow size {size / 2**20:.0f} MiB; "
          f"fingerprint {manifest['fingerprint_sha256'][:16]}")
    ok = n / (t2 - t1) >= 20_000 and max_rss < 2 * 2**30
    print("targets (>= 20,000 ex/s, < 2 GiB):", "met" if ok else "NOT met")
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
