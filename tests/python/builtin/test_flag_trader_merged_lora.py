"""flag-trader's merged LoRA product: the same function and gradients as peft's adapter branch,
used only where that holds (training forward passes on the devices it is on for), and invisible
to checkpoints, copies and the CPU's numerics."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from himari_builtin.models.flag_trader import FlagTrader, FlagTraderConfig  # noqa: E402
from himari_builtin.models.flag_trader import merged_lora  # noqa: E402
from himari_builtin.models.flag_trader.merged_lora import merged_lora_product, use_merged_lora  # noqa: E402

from himari.plugin import ModelContext  # noqa: E402

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 16, "context_length": 8, "lora_rank": 4, "head_hidden": 8,
        "cpu_threads": 1}


def _network(seed: int = 0, **changes: Any) -> torch.nn.Module:
    """A tiny flag-trader network in float64 whose adapters are not zero (peft starts B at zero,
    where the adapter branch vanishes and any product of it passes)."""
    torch.manual_seed(seed)
    net = FlagTrader(FlagTraderConfig(**{**TINY, **changes}), ModelContext(n_features=6)).network.double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return net


def _adapted_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in net.modules() if hasattr(m, "lora_A")]


def _loss_and_grads(net: torch.nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    net.zero_grad(set_to_none=True)
    obs = obs.clone().requires_grad_(True)
    logits, value = net(obs)
    loss = (logits.sin() ** 2).sum() + (value * torch.arange(len(value), dtype=value.dtype)).sum()
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}, obs.grad


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the merged products actually computed."""
    seen: list[int] = []
    original = merged_lora.merged_lora_product

    def counting(*args: Any) -> torch.Tensor:
        seen.append(1)
        return original(*args)

    monkeypatch.setattr(merged_lora, "merged_lora_product", counting)
    return seen


def test_the_product_and_its_gradients_match_the_adapter_written_out_by_hand() -> None:
    """Against ``x W + b + s (x A^T) B^T`` differentiated by autograd, in float64."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 7, dtype=torch.float64, generator=g)
    w, b = torch.randn(7, 9, dtype=torch.float64, generator=g), torch.randn(9, dtype=torch.float64, generator=g)
    a, bb = torch.randn(3, 7, dtype=torch.float64, generator=g), torch.randn(9, 3, dtype=torch.float64, generator=g)
    weights = torch.randn(2, 5, 9, dtype=torch.float64, generator=g)
    results = []
    for merged in (False, True):
        xs, as_, bs = (t.clone().requires_grad_(True) for t in (x, a, bb))
        y = merged_lora_product(xs, w, b, as_, bs, 2.5) if merged else xs @ w + b + 2.5 * (xs @ as_.t()) @ bs.t()
        (y * weights).sum().backward()
        results.append((y.detach(), xs.grad, as_.grad, bs.grad))
    for hand, merged in zip(*results):
        torch.testing.assert_close(merged, hand, rtol=1e-12, atol=1e-12)


def test_a_network_on_the_merged_path_computes_peft_s_loss_and_gradients(calls: list[int]) -> None:
    """Every adapted projection of a training pass goes through the product, and the loss, every
    parameter's gradient and the input's gradient equal peft's to float64 rounding."""
    obs = torch.randn(5, 8, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    peft_net = _network()
    merged_net = copy.deepcopy(peft_net)
    assert use_merged_lora(merged_net, ("cpu",)) == 4 * TINY["n_layer"]
    want = _loss_and_grads(peft_net, obs)
    assert calls == []
    got = _loss_and_grads(merged_net, obs)
    assert len(calls) == 4 * TINY["n_layer"]
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=0)
    assert set(got[1]) == set(want[1]) and any("lora_A" in k for k in want[1])
    for name in want[1]:
        torch.testing.assert_close(got[1][name], want[1][name], rtol=1e-10, atol=1e-12, msg=name)
    torch.testing.assert_close(got[2], want[2], rtol=1e-10, atol=1e-12)


def test_peft_s_path_serves_inference_dropout_and_other_devices(calls: list[int]) -> None:
    obs = torch.randn(3, 8, 10, dtype=torch.float64)
    net = _network()
    use_merged_lora(net, ("cpu",))
    with torch.no_grad():  # inference: rollouts replay graphs captured on peft's path
        net(obs)
    assert calls == []
    use_merged_lora(net, ("cuda",))  # as merged_lora=true sets it: CPU numerics stay peft's
    _loss_and_grads(net, obs)
    assert calls == []

    dropped = _network(lora_dropout=0.5)
    use_merged_lora(dropped, ("cpu",))
    dropped.train()
    _loss_and_grads(dropped, obs)  # dropout on the adapter's input only: no single merged weight
    assert calls == []
    dropped.eval()
    _loss_and_grads(dropped, obs)  # dropout off in eval mode: the merged product is exact again
    assert len(calls) == 4 * TINY["n_layer"]


def test_the_setting_picks_the_devices_and_changes_nothing_a_checkpoint_sees() -> None:
    on, off = _network(merged_lora=True), _network()
    assert {m.merged_device_types for m in _adapted_layers(on)} == {("cuda",)}
    assert {m.merged_device_types for m in _adapted_layers(off)} == {()}
    assert on.state_dict().keys() == off.state_dict().keys()
    for copied in (copy.deepcopy(on), pickle.loads(pickle.dumps(on))):
        layers = _adapted_layers(copied)
        assert {type(m).__name__ for m in layers} == {"MergedLoRALinear"}
        assert {m.merged_device_types for m in layers} == {("cuda",)}
        assert all(m.base_layer is not o.base_layer for m, o in zip(layers, _adapted_layers(on)))


def test_a_second_derivative_through_the_product_is_refused_not_wrong() -> None:
    """Its backward pass reads the merged weight it saved; differentiating that again would miss
    the adapters' share, so it refuses instead."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    y = merged_lora_product(x, torch.randn(3, 5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), a, b, 1.0)
    (grad_a,) = torch.autograd.grad(y.square().sum(), a, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate"):
        grad_a.sum().backward()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_in_bf16_the_merged_update_is_as_close_to_the_exact_function_as_peft_s(calls: list[int]) -> None:
    """The training pass as the Trainer runs it (bf16 autocast), eager and with the backbone
    compiled: the merged path is taken, and its hidden states and gradients are as near the
    float32 result as peft's bf16 path is."""
    obs = torch.randn(6, 8, 10, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    net = _network().float().cuda()
    peft_net = copy.deepcopy(net)
    use_merged_lora(peft_net, ())

    def run(model: torch.nn.Module, bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            hidden = model.hidden(obs)
            loss = (hidden.float() ** 2).mean()
        loss.backward()
        return hidden.detach().float(), {k: p.grad.float() for k, p in model.named_parameters() if p.grad is not None}

    def error(got: torch.Tensor, want: torch.Tensor) -> float:
        return float((got - want).abs().max() / want.abs().max())

    exact, peft_bf16 = run(peft_net, bf16=False), run(peft_net, bf16=True)
    assert calls == []
    for compiled in (False, True):
        if compiled:
            net.backbone.get_base_model().compile()
        hidden, grads = run(net, bf16=True)
        assert calls or compiled  # a compiled graph calls the traced product, not the Python function
        assert 0 < error(hidden, exact[0]) <= 2 * error(peft_bf16[0], exact[0])
        assert grads.keys() == exact[1].keys()
        for name, grad in exact[1].items():
            assert error(grads[name], grad) <= 2 * error(peft_bf16[1][name], grad) + 1e-3, name


def test_under_bf16_autocast_the_merged_path_is_as_close_to_the_exact_function_as_peft_s(calls: list[int]) -> None:
    """The autocast branch the GPU takes, run under the CPU's bf16 autocast: the merged product
    computes in the autocast dtype as peft's products do there, returns the input's gradient in
    the input's dtype and the adapters' in theirs, and its hidden states and gradients are as near
    the float32 result as peft's own bf16 path is (bf16 rounds both, differently)."""
    obs = torch.randn(6, 8, 10, generator=torch.Generator().manual_seed(0))
    net = _network().float()
    peft_net = copy.deepcopy(net)
    use_merged_lora(net, ("cpu",))

    def run(model: torch.nn.Module, bf16: bool) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        x = obs.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            hidden = model.hidden(x)
            loss = (hidden.float() ** 2).mean()
        loss.backward()
        return hidden.detach().float(), x.grad, {k: p.grad for k, p in model.named_parameters() if p.grad is not None}

    exact = run(peft_net, bf16=False)
    peft_bf16 = run(peft_net, bf16=True)
    assert calls == []
    merged_bf16 = run(net, bf16=True)
    assert len(calls) == 4 * TINY["n_layer"]
    assert merged_bf16[1].dtype == torch.float32 and all(g.dtype == torch.float32 for g in merged_bf16[2].values())

    def error(got: torch.Tensor, want: torch.Tensor) -> float:
        return float((got - want).abs().max() / want.abs().max())

    assert 0 < error(merged_bf16[0], exact[0]) <= 2 * error(peft_bf16[0], exact[0])  # rounded, no worse
    assert error(merged_bf16[1], exact[1]) <= 2 * error(peft_bf16[1], exact[1]) + 1e-3
    for name, grad in exact[2].items():
        assert error(merged_bf16[2][name], grad) <= 2 * error(peft_bf16[2][name], grad) + 1e-3, name
    x = torch.randn(3, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = merged_lora_product(x, torch.randn(7, 5), torch.zeros(5), torch.randn(2, 7), torch.randn(5, 2), 1.0)
    assert y.dtype == torch.bfloat16  # as peft's autocast products give
