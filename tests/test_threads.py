"""ThreadGovernor: torch's thread count follows other processes' CPU load (issue 14)."""

from __future__ import annotations

import pytest
import torch

from flan_nb import threads


class FakeMachine:
    """Readers for a machine where `others` cores are busy besides this process's `ours`."""

    def __init__(self) -> None:
        self.t = 0.0
        self.busy = 0.0
        self.own = 0.0
        self.others = 0.0
        self.ours = 2.0

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.own += self.ours * seconds
        self.busy += (self.ours + self.others) * seconds


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the governors below run a 2-core machine
    yield
    torch.set_num_threads(before)


def _governor(m: FakeMachine, **kw) -> threads.ThreadGovernor:
    return threads.ThreadGovernor(2, cores=2, interval_s=0.5, busy=lambda: m.busy,
                                  own=lambda: m.own, clock=lambda: m.t, **kw)


def test_gives_up_a_thread_under_load_and_takes_it_back(restore_threads):
    m = FakeMachine()
    g = _governor(m)
    m.advance(1.0)
    assert g.check() == 2 and g.others == pytest.approx(0.0)
    m.others, m.ours = 1.0, 1.0
    m.advance(1.0)
    assert g.check() == 1 and torch.get_num_threads() == 1
    assert g.others == pytest.approx(1.0)
    m.others, m.ours = 0.0, 1.0
    m.advance(1.0)
    assert g.check() == 2 and torch.get_num_threads() == 2
    assert g.changes == 2


def test_small_background_load_and_short_intervals_change_nothing(restore_threads):
    m = FakeMachine()
    g = _governor(m)
    m.others = 0.3  # below the 0.5-core threshold
    m.advance(1.0)
    assert g.check() == 2
    m.others = 2.0
    m.advance(0.1)  # within interval_s: no new reading
    assert g.check() == 2 and g.changes == 0


def test_attach_checks_before_each_layer(restore_threads):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=3, num_attention_heads=2,
                                         num_key_value_heads=1)).eval()
    m = FakeMachine()
    g = _governor(m, )
    calls = []
    g.check = lambda: calls.append(1) or 2  # type: ignore[method-assign]
    handles = g.attach(model)
    with torch.inference_mode():
        model(input_ids=torch.tensor([[1, 2, 3]]))
    assert len(calls) == 1 + 3  # the model, then each decoder layer
    for h in handles:
        h.remove()


def test_governed_respects_fixed_and_rejects_typos(monkeypatch):
    model = torch.nn.Linear(2, 2)
    monkeypatch.setenv(threads.ENV, "fixed")
    assert threads.governed(model) is None
    monkeypatch.setenv(threads.ENV, "fast")
    with pytest.raises(ValueError, match="FLAN_NB_THREADS='fast'"):
        threads.governed(model)


def test_no_proc_stat_means_no_governor(tmp_path):
    assert threads._read_busy_seconds(str(tmp_path / "missing")) is None
    g = threads.ThreadGovernor(2, busy=lambda: None)
    assert g.check() == 2


def test_reads_this_machines_proc_stat():
    busy = threads._read_busy_seconds()
    if busy is None:
        pytest.skip("no /proc/stat on this platform")
    assert busy > 0


def test_follows_torchs_count_not_its_own_memory(restore_threads):
    """A second governor (or the user) lowered torch's count: a quiet reading restores it."""
    m = FakeMachine()
    g = _governor(m)
    torch.set_num_threads(1)
    m.advance(1.0)
    assert g.check() == 2 and torch.get_num_threads() == 2
