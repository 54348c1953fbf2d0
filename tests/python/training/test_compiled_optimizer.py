"""The AdamW update ``train.compile`` replays (``himari.training.compiled_optimizer``), compiled
on the CPU and checked against ``torch.optim.AdamW`` itself, and its device-side guard."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from himari.errors import TrainingError
from himari.training.compiled_optimizer import CompiledAdamW

SHAPES = [(5, 3), (5,), (2, 5)]


def _params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]


def _set_grads(params: list[torch.nn.Parameter], step: int, poison: bool = False) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * (1.0 + step)
        if poison:
            p.grad[0] = float("nan")


def test_the_compiled_update_is_torchs_adamw_and_skips_where_flagged() -> None:
    """Six steps with torch's AdamW beside: the weights, both moments and the step counts agree
    to float32 rounding. The third step's gradients hold NaN and the flag is set: nothing moves,
    bit for bit, and the flag left set skips the fourth step too; cleared, the updates go on as
    torch's AdamW without those two steps. Wrong updates this catches: weight decay added to the
    gradient (Adam's L2) instead of decoupled, a bias correction missing or using the old step,
    the moments' coefficients swapped, a guard that is inverted, that counts skipped steps or
    that lets NaN through."""
    hyper = {"lr": 0.05, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}
    ours, ref = _params(), _params()
    opt, ref_opt = torch.optim.AdamW(ours, **hyper), torch.optim.AdamW(ref, **hyper)
    _set_grads(ours, 0)
    _set_grads(ref, 0)
    opt.step()  # the ordinary first step creates the state the compiled update works on
    ref_opt.step()
    update, found_inf = CompiledAdamW(opt), torch.zeros(())
    for step in range(1, 7):
        skipped = step in (3, 4)
        _set_grads(ours, step, poison=step == 3)
        if step == 3:
            found_inf.fill_(1.0)  # what the replayed step's guard sets from a non-finite loss
        if step == 5:
            found_inf.zero_()
        before = [(p.detach().clone(), {k: v.clone() for k, v in opt.state[p].items()}) for p in ours]
        update(found_inf)
        if skipped:
            for p, (w, state) in zip(ours, before):
                assert torch.equal(p.detach(), w)
                assert all(torch.equal(opt.state[p][k], v) for k, v in state.items())
            continue
        _set_grads(ref, step)
        ref_opt.step()
        for p, r in zip(ours, ref):
            torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6)
            for k in ("exp_avg", "exp_avg_sq", "step"):
                torch.testing.assert_close(opt.state[p][k], ref_opt.state[r][k], rtol=1e-5, atol=1e-7)
    assert int(opt.state[ours[0]]["step"]) == 5  # steps 0, 1, 2, 5 and 6


def test_what_it_cannot_run_is_refused() -> None:
    params = _params()
    with pytest.raises(TrainingError, match="amsgrad"):
        CompiledAdamW(torch.optim.AdamW(params, amsgrad=True))
    update = CompiledAdamW(torch.optim.AdamW(params))
    _set_grads(params, 0)
    with pytest.raises(TrainingError, match="first ordinary step"):
        update(torch.zeros(()))
