"""Issue 10, fold: all or nothing under any exception (KeyboardInterrupt included), one fold at a time with
the model saying it is folded, and no non-finite value ever written into the weights."""

from __future__ import annotations

import pytest
import torch

from interventions import AffineMap, Plan, fold

F64 = torch.float64
FIRST, SECOND = "blocks.0.mlp.hook_out", "blocks.1.mlp.hook_out"


def _diag(d: int, seed: int) -> AffineMap:
    g = torch.Generator().manual_seed(seed)
    return AffineMap(
        d, "diag", 1 + 0.3 * torch.randn(d, generator=g, dtype=F64), torch.randn(d, generator=g, dtype=F64)
    )


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert set(after) == set(before), f"keys added/removed: {set(after) ^ set(before)}"
    for k in before:
        assert after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]), k


class _InterruptingMap(AffineMap):
    """A diag map whose weight computation is interrupted (Ctrl-C) after the first site was written."""

    first_written: bool | None = None

    def linear(self, x):
        layer = self.model.model.get_submodule(self.model.site(FIRST).linear)
        _InterruptingMap.first_written = layer.bias is not None  # fold added a bias there already
        raise KeyboardInterrupt


def test_keyboard_interrupt_mid_fold_restores_everything(tiny_llada):
    bad = _InterruptingMap(64, "diag", torch.ones(64, dtype=F64), torch.zeros(64, dtype=F64))
    bad.model = tiny_llada
    plan = Plan({FIRST: _diag(64, 1), SECOND: bad})
    assert tiny_llada.model.get_submodule(tiny_llada.site(FIRST).linear).bias is None
    before = _snapshot(tiny_llada)
    with pytest.raises(KeyboardInterrupt):
        fold(tiny_llada, plan)
    assert _InterruptingMap.first_written is True  # the interrupt really came after the first write
    _assert_unchanged(tiny_llada, before)  # bit-identical, and no new bias key
    assert not tiny_llada.folded and tiny_llada.active_fold is None
    with fold(tiny_llada, Plan({FIRST: _diag(64, 1)})):  # a later fold works normally
        assert tiny_llada.folded
    _assert_unchanged(tiny_llada, before)


def test_second_fold_is_refused_and_restore_is_idempotent(tiny_llada):
    plan = Plan({FIRST: _diag(64, 2)})
    before = _snapshot(tiny_llada)
    assert tiny_llada.folded is False
    h1 = fold(tiny_llada, plan)
    assert tiny_llada.folded and tiny_llada.active_fold is h1 and h1.plan is plan
    folded = _snapshot(tiny_llada)
    with pytest.raises(ValueError, match=r"already folded .*restore that first.*fold\(model, plan_a \+ plan_b\)"):
        fold(tiny_llada, plan)
    _assert_unchanged(tiny_llada, folded)  # the refused fold touched nothing
    h1.restore()
    h1.restore()  # a second restore is a no-op, not an error
    _assert_unchanged(tiny_llada, before)
    assert not tiny_llada.folded
    # the sequence: restore in any order leaves the checkpoint's weights
    h2 = fold(tiny_llada, plan + Plan({SECOND: _diag(64, 3)}))
    h1.restore()  # a stale handle does not unfold someone else's fold
    assert tiny_llada.active_fold is h2
    h2.restore()
    _assert_unchanged(tiny_llada, before)


def test_fold_refuses_non_finite_weights(tiny_llada):
    before = _snapshot(tiny_llada)
    huge = AffineMap(64, "diag", torch.full((64,), 1e300, dtype=F64), torch.zeros(64, dtype=F64))  # finite in f64
    with pytest.raises(
        ValueError,
        match=r"fold refused: folding the map of 'blocks.1.mlp.hook_out' into .* "
        r"non-finite weight entries in torch.float32.*no weight was changed",
    ):
        fold(tiny_llada, Plan({FIRST: _diag(64, 4), SECOND: huge}))
    _assert_unchanged(tiny_llada, before)
    assert not tiny_llada.folded
    big_beta = AffineMap(64, "identity", beta=torch.full((64,), 1e300, dtype=F64))
    with pytest.raises(ValueError, match="non-finite bias entries"):
        fold(tiny_llada, Plan({FIRST: big_beta}))
    _assert_unchanged(tiny_llada, before)
