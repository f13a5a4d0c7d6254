"""`python -m flan_nb.train PARAMS.yaml [--run-dir DIR]`: Flan finetuning from the command line,
also under `accelerate launch -m flan_nb.train` on N processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from flan_nb import config
from flan_nb.train import checkpoints
from flan_nb.train.loop import train
from flan_nb.train.params import (
    EXIT_DIVERGED,
    NOTEBOOK,
    TrainError,
    TrainingDiverged,
    check_params,
    params_from_file,
)

# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flan_nb.train",
        description="Flan finetuning (the 02_finetune section of a params file). Under "
                    "`accelerate launch -m flan_nb.train` the same loop runs on N processes. "
                    "Rerunning the same command resumes from the latest checkpoint.")
    parser.add_argument("params_file")
    parser.add_argument("--run-dir", default="",
                        help="run directory holding the mixture output (default: "
                             "results/train-<experiment>-<params hash>, created if missing)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--params-origin", default="",
                        help="the params file the user wrote, named in error messages (the "
                             "notebook launcher passes it: the file read is its launch copy)")
    args = parser.parse_args(argv)

    from flan_nb import runs

    try:
        # every check before the default run directory is created: a bad file leaves nothing
        cfg = params_from_file(args.params_file, run_dir=args.run_dir, origin=args.params_origin)
        check_params(cfg)
        if not cfg.run_dir:
            params = config.load_params_file(args.params_file)
            experiment = str(params.get("experiment", "train"))
            path = runs.results_root() / (
                f"train-{experiment}-{runs.params_hash(params)[:8]}")
            path.mkdir(parents=True, exist_ok=True)
            cfg = dataclasses.replace(cfg, run_dir=str(path))
        run = runs.open_run(cfg.run_dir, notebook=NOTEBOOK)
        train(cfg, run, progress=not args.no_progress)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except (TrainError, ValueError, FileNotFoundError, checkpoints.CheckpointError,
            runs.MissingOutput) as exc:  # ValueError: ParamsError, ModelSpecError, PackingError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
