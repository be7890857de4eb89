"""Background warm-ups of a small in-process run (`curate/warm_up.py`): when they start, that they run
off the main thread, never while a phase forks, and that the order stage's warm-up leaves its output
unchanged."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from datatrove.pipeline.extractors import Trafilatura


@dataclass
class FakePhase:
    pipeline: list = field(default_factory=list)


class Warmed:
    def __init__(self):
        self.calls: list[str] = []

    def warm_up(self) -> None:
        self.calls.append(threading.current_thread().name)


def test_warm_ups_start_after_the_last_forking_phase_and_off_the_main_thread():
    from curate.warm_up import WarmUps

    early, late, done = Warmed(), Warmed(), Warmed()
    phases = [FakePhase(), FakePhase([early]),  # a warm-up in phase 1: due at phase 0
              FakePhase([Trafilatura()]),  # forks: later warm-ups wait for it
              FakePhase(), FakePhase([late]), FakePhase([done])]
    warm = WarmUps(phases)
    warm.phase_starts(0)
    warm.join()
    assert early.calls == ["curate-warm-up"] and late.calls == []
    warm.phase_starts(1)
    warm.phase_starts(2)
    assert late.calls == []  # not while phase 2 forks
    warm.phase_starts(3, needed=lambda phase: phase != 5)  # phase 5 already done in a resumed run
    warm.join()
    assert late.calls == ["curate-warm-up"] and done.calls == []


def test_a_failing_warm_up_is_ignored():
    from curate.warm_up import WarmUps

    class Broken:
        def warm_up(self):
            raise RuntimeError("no numba here")

    after = Warmed()
    warm = WarmUps([FakePhase(), FakePhase([Broken(), after])])
    warm.phase_starts(0)
    warm.join()
    assert after.calls == ["curate-warm-up"]


def test_order_warm_up_leaves_the_ordering_unchanged():
    """The order stage's warm-up (numba's start and its kernels) run in another thread, then the same
    partition ordered: the path is the one a fresh ordering gives (numba's random state is per thread
    and seeded by the kernel)."""
    from stages.order.algorithms import ALGORITHMS
    from stages.order.stage import OrderPaths, OrderSettings

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    nb = np.argsort(-sims, axis=1)[:, :8].astype(np.int64)
    ns = np.take_along_axis(sims, nb, axis=1).astype(np.float32)
    settings = OrderSettings()
    algorithm = ALGORITHMS[settings.algorithm]
    before = algorithm(x, nb, ns, 7, **algorithm.options_from(settings))
    thread = threading.Thread(target=OrderPaths("", {}, "", settings, 7).warm_up)
    thread.start()
    during = algorithm(x, nb, ns, 7, **algorithm.options_from(settings))
    thread.join()
    after = algorithm(x, nb, ns, 7, **algorithm.options_from(settings))
    assert np.array_equal(before, during) and np.array_equal(before, after)
    assert sorted(before.tolist()) == list(range(300))
