"""CPU thread count that follows the machine's load (issue 14: steady on a shared machine).

torch's CPU kernels run on an OpenMP pool (GNU libgomp in the PyPI wheels) whose threads spin
at each barrier before sleeping. On a quiet machine that spin is what makes small parallel
regions fast; when another CPU-bound process holds a core, a spinning thread burns the time
slice its partner needs, and every barrier waits for a descheduled thread. Measured on this
project's 2-core machine (SmolLM2-135M, 40 BBH direct prompts, 8.45 s quiet):

    competitor          ours: 2 threads, spin   2 threads, OMP_WAIT_POLICY=PASSIVE   1 thread
    torch, 2 threads    89.5 s (10.6x)          13.0 s (1.5x)                        16.1 s (1.9x)
    torch, 1 thread     25.9 s (3.1x)           12.5 s (1.5x)                        --
    none                 8.45 s                 10.6 s (1.25x)                       --

A passive wait policy holds up under load but costs a quarter of the quiet speed, and the wait
policy can only be set before the OpenMP runtime starts. So flan_nb keeps the spinning default
and instead watches the machine: `ThreadGovernor` reads the system's busy CPU time
(/proc/stat) minus this process's own (os.times) at most every `interval_s`, and when other
processes keep at least `threshold` cores busy it lowers torch's intra-op thread count so that
ours plus theirs fit the cores (one thread on 2 cores: no barrier left to spin at), raising it
again when they stop. `attach(model)` checks before every decoder layer's forward, so the
switch happens within one layer of the load changing; `models.load` attaches it to CPU models.

Set FLAN_NB_THREADS=fixed to keep torch's thread count as it is (e.g. to pin it yourself with
torch.set_num_threads or OMP_NUM_THREADS). Off Linux (no /proc/stat) the governor does nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

PROC_STAT = "/proc/stat"
ENV = "FLAN_NB_THREADS"
_QUIET_THREADS: list[int] = []  # torch's count before any governor lowered it


def _read_busy_seconds(path: str = PROC_STAT) -> float | None:
    """Busy CPU seconds of the whole machine since boot (all but idle and iowait), or None."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Sets torch's intra-op thread count from how many cores other processes keep busy.

    max_threads: the count on a quiet machine (default: torch's count at creation).
    interval_s: minimum wall time between two readings (seconds); readings are cheap (one line
    of /proc/stat) but a shorter interval makes the load estimate noisy.
    threshold: other processes' load (in cores) from which threads are given up.
    busy / own / clock: injectable readers (tests); defaults read /proc/stat, os.times,
    time.monotonic. `check()` returns the thread count in force; `changes` counts switches.
    """

    def __init__(self, max_threads: int | None = None, *, interval_s: float = 0.5,
                 threshold: float = 0.5, cores: int | None = None,
                 busy: Callable[[], float | None] = _read_busy_seconds,
                 own: Callable[[], float] = _own_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not _QUIET_THREADS:
            _QUIET_THREADS.append(torch.get_num_threads())
        self.max_threads = int(max_threads or _QUIET_THREADS[0])
        self.cores = int(cores or os.cpu_count() or 1)
        self.interval_s, self.threshold = float(interval_s), float(threshold)
        self._busy, self._own, self._clock = busy, own, clock
        self.threads = self.max_threads
        self.changes = 0
        self.others = 0.0
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        busy = self._busy()
        return None if busy is None else (self._clock(), busy, self._own())

    def check(self) -> int:
        """Re-read the load if `interval_s` has passed and adjust torch's thread count."""
        if self._last is None:
            return self.threads
        now = self._clock()
        if now - self._last[0] < self.interval_s:
            return self.threads
        sample = self._sample()
        if sample is None:
            return self.threads
        wall = sample[0] - self._last[0]
        self.others = max(0.0, (sample[1] - self._last[1]) - (sample[2] - self._last[2])) / wall
        self._last = sample
        want = self.max_threads
        if self.others >= self.threshold:
            want = max(1, min(self.max_threads, self.cores - round(self.others)))
        # torch's count, not ours: another governor (or the user) may have changed it
        if want != torch.get_num_threads():
            torch.set_num_threads(want)
            self.changes += 1
        self.threads = want
        return self.threads

    def attach(self, model: Any) -> list[Any]:
        """Check before the forward of `model` and of each of its repeated blocks (decoder
        layers, T5 blocks); returns the hook handles (call .remove() to detach)."""
        def hook(module: Any, args: Any) -> None:
            self.check()

        handles = [model.register_forward_pre_hook(hook)]
        for module in model.modules():
            if isinstance(module, torch.nn.ModuleList):
                handles += [block.register_forward_pre_hook(hook) for block in module]
        return handles


def governed(model: Any) -> ThreadGovernor | None:
    """Attach a `ThreadGovernor` to a CPU model unless FLAN_NB_THREADS=fixed; returns it (also
    as `model.flan_nb_threads`), or None when disabled, on GPU, in a multi-process launch, or
    without /proc/stat. Raises ValueError on another FLAN_NB_THREADS value."""
    mode = os.environ.get(ENV, "auto").strip().lower()
    if mode not in ("auto", "fixed"):
        raise ValueError(f"{ENV}={mode!r}: use 'auto' (follow the machine's load) or 'fixed'")
    params = next(iter(model.parameters()), None)
    if mode == "fixed" or (params is not None and params.device.type != "cpu"):
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # data-parallel peers on the same CPU are "other processes" by this measure
        return None
    governor = ThreadGovernor()
    if governor._last is None:
        return None
    governor.attach(model)
    model.flan_nb_threads = governor
    return governor
