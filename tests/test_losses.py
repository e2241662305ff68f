"""Tests for gemsft.losses against independent float64 references.

References are written from the formulas (explicit exp/sum in numpy or torch),
not by calling the code under test. GEM's q = softmax(z / beta) and the
log-sigmoid weights are constants for the gradient, so the gradient GEM
trains with is not the derivative of its value; the gradcheck tests account for
that explicitly (see ``test_gem_gradcheck``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gemsft.losses import (
    LOSSES,
    LossKind,
    bind_loss,
    ce_entropy_loss,
    ce_loss,
    fused_linear_ce_loss,
    fused_linear_gem_loss,
    gem_listing1_loss,
    gem_loss,
    shift_for_causal_lm,
    token_entropy,
)
from gemsft.objectives import OBJECTIVES, Objective, get_objective

IGNORE = -100
BETAS = [0.5, 0.7, 1.0, 2.0]
HS = ["linear", "log_sigmoid"]


# Every tensor here is tiny; on a busy 2-core machine waking intra-op threads
# costs milliseconds per kernel (thousands of calls in the descent tests).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- data + references


def make_batch(b=3, t=6, v=11, n_masked=5, seed=0, scale=2.0, dtype=torch.float64):
    """Random logits (b, t, v) and labels (b, t) with ``n_masked`` ignored positions."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    flat = labels.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:n_masked]] = IGNORE
    return logits, labels


def np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def gem_token_loop(z, y, beta, h):
    """Per-token GEM value by explicit loops (float64 numpy), mean over unmasked."""
    z = np.asarray(z, dtype=np.float64).reshape(-1, z.shape[-1])
    y = np.asarray(y).reshape(-1)
    losses = []
    for zi, yi in zip(z, y):
        if yi == IGNORE:
            continue
        m = zi.max()
        lse = m + math.log(sum(math.exp(v - m) for v in zi))
        mq = (zi / beta).max()
        zq = sum(math.exp(v / beta - mq) for v in zi)
        total = 0.0
        for j, zj in enumerate(zi):
            q = math.exp(zj / beta - mq) / zq
            w = 1.0 if h == "linear" else 1.0 / (1.0 + math.exp(-0.01 * (zj - zi[yi])))
            total -= q * w * ((zi[yi] - lse) - (zj - lse))
        losses.append(total)
    return sum(losses) / len(losses)


def gem_torch_ref(z, y, beta, h, detach):
    """Float64 torch GEM on aligned (…, V)/(…) inputs, written from the formula.

    ``detach=True``: q and w are constants (the gradient GEM trains with).
    ``detach=False``: q and w depend on z (the derivative of the value).
    """
    mask = y != IGNORE
    z, y = z[mask], y[mask]
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values.detach())
    log_f = torch.log(e / e.sum(dim=-1, keepdim=True))
    eq = torch.exp((z - z.max(dim=-1, keepdim=True).values.detach()) / beta)
    q = eq / eq.sum(dim=-1, keepdim=True)
    z_y = z.gather(1, y[:, None])
    w = torch.ones_like(z) if h == "linear" else 1.0 / (1.0 + torch.exp(-0.01 * (z - z_y)))
    if detach:
        q, w = q.detach(), w.detach()
    log_f_y = log_f.gather(1, y[:, None])
    return (-(q * w * (log_f_y - log_f)).sum(dim=-1)).mean()


# --------------------------------------------------------------------------- 1-2: linear gradient


@pytest.mark.parametrize("beta", BETAS)
def test_linear_gradient_is_q_minus_onehot(beta):
    logits, labels = make_batch(seed=1)
    z = logits.clone().requires_grad_()
    gem_loss(z, labels, beta=beta).backward()

    zn, yn = logits.numpy(), labels.numpy()
    mask = yn != IGNORE
    n = mask.sum()
    expected = np.zeros_like(zn)
    q = np_softmax(zn / beta)
    for idx in zip(*np.nonzero(mask)):
        onehot = np.zeros(zn.shape[-1])
        onehot[yn[idx]] = 1.0
        expected[idx] = (q[idx] - onehot) / n
    np.testing.assert_allclose(z.grad.numpy(), expected, rtol=1e-12, atol=1e-14)
    assert torch.all(z.grad[labels == IGNORE] == 0)


def test_beta_one_gradient_equals_cross_entropy():
    logits, labels = make_batch(seed=2)
    z1 = logits.clone().requires_grad_()
    z2 = logits.clone().requires_grad_()
    value = gem_loss(z1, labels, beta=1.0)
    value.backward()
    F.cross_entropy(z2.reshape(-1, z2.shape[-1]), labels.reshape(-1), ignore_index=IGNORE).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-12, atol=1e-14)
    # Value at beta = 1: CE(z, y) - H(softmax(z)) (since q = f).
    zn, yn = logits.numpy(), labels.numpy()
    mask = yn != IGNORE
    log_f = np_log_softmax(zn[mask])
    ce = -log_f[np.arange(mask.sum()), yn[mask]]
    ent = -(np.exp(log_f) * log_f).sum(-1)
    assert value.item() == pytest.approx((ce - ent).mean(), rel=1e-12)


# --------------------------------------------------------------------------- 3-4: value references


@pytest.mark.parametrize("h", HS)
@pytest.mark.parametrize("beta", [0.5, 0.7, 1.0])
def test_value_matches_paper_listing1(h, beta):
    logits, labels = make_batch(b=2, t=9, v=13, n_masked=6, seed=3)
    ours = gem_loss(*shift_for_causal_lm(logits, labels), beta=beta, h=h)
    ref = gem_listing1_loss(logits, labels, beta=beta, h=h)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    # float32 as well (the dtype training runs in).
    l32 = logits.float()
    ours32 = gem_loss(*shift_for_causal_lm(l32, labels), beta=beta, h=h)
    ref32 = gem_listing1_loss(l32, labels, beta=beta, h=h)
    assert ours32.dtype == torch.float32
    assert ours32.item() == pytest.approx(ref32.item(), rel=1e-5, abs=1e-6)


def test_linear_gradient_matches_paper_listing1():
    logits, labels = make_batch(b=2, t=9, v=13, n_masked=6, seed=4)
    z1 = logits.clone().requires_grad_()
    z2 = logits.clone().requires_grad_()
    gem_loss(*shift_for_causal_lm(z1, labels), beta=0.7).backward()
    gem_listing1_loss(z2, labels, beta=0.7).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("beta", [0.5, 0.7, 1.0])
def test_log_sigmoid_gradient_matches_detached_reference(beta):
    logits, labels = make_batch(seed=5, scale=20.0)  # large logits: weights far from 1/2
    z1 = logits.clone().requires_grad_()
    z2 = logits.clone().requires_grad_()
    gem_loss(z1, labels, beta=beta, h="log_sigmoid").backward()
    gem_torch_ref(z2, labels, beta, "log_sigmoid", detach=True).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-10, atol=1e-14)
    assert torch.all(z1.grad[labels == IGNORE] == 0)


def test_log_sigmoid_weights_are_detached_unlike_printed_listing1():
    # Listing 1 as printed computes logits_diff outside no_grad, so gradient also
    # flows through the weights there; gem_loss follows the released code (detached).
    logits, labels = make_batch(seed=6, scale=20.0)
    z1 = logits.clone().requires_grad_()
    z2 = logits.clone().requires_grad_()
    z3 = logits.clone().requires_grad_()
    gem_loss(*shift_for_causal_lm(z1, labels), h="log_sigmoid").backward()
    gem_listing1_loss(z2, labels, h="log_sigmoid").backward()
    shifted_logits, shifted_labels = shift_for_causal_lm(z3, labels)
    gem_torch_ref(shifted_logits, shifted_labels, 0.7, "log_sigmoid", detach=True).backward()
    torch.testing.assert_close(z1.grad, z3.grad, rtol=1e-10, atol=1e-14)
    assert (z1.grad - z2.grad).abs().max() > 1e-4


@pytest.mark.parametrize("h", HS)
@pytest.mark.parametrize("beta", [0.5, 0.7, 2.0])
def test_value_matches_per_token_loop(h, beta):
    logits, labels = make_batch(b=2, t=3, v=5, n_masked=2, seed=7, scale=3.0)
    ours = gem_loss(logits, labels, beta=beta, h=h)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(gem_token_loop(logits.numpy(), labels.numpy(), beta, h), rel=1e-12)


@pytest.mark.parametrize("name", ["gem_linear", "gem_log_sigmoid", "ce", "ce_entropy", "token_entropy"])
def test_minus_inf_logits_act_as_removed_tokens(name):
    fn = LOSS_FNS[name]
    logits, labels = make_batch(b=2, t=5, v=9, n_masked=3, seed=17)
    labels = torch.where(labels >= 7, labels - 3, labels)  # no target in columns 7, 8
    banned = logits.clone()
    banned[..., 7:] = float("-inf")
    value = fn(banned, labels)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(fn(logits[..., :7], labels).item(), rel=1e-12)
    if name != "token_entropy":
        z = banned.requires_grad_()
        fn(z, labels).backward()
        assert torch.all(torch.isfinite(z.grad)) and torch.all(z.grad[..., 7:] == 0)


def test_inputs_are_not_modified():
    logits, labels = make_batch(seed=8, dtype=torch.float32)
    before, labels_before = logits.clone(), labels.clone()
    for h in HS:
        gem_loss(logits, labels, h=h)
        gem_loss(logits.requires_grad_(), labels, h=h).backward()
    ce_entropy_loss(logits, labels)
    token_entropy(logits, labels)
    assert torch.equal(logits.detach(), before) and torch.equal(labels, labels_before)


@pytest.mark.parametrize("h", HS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_gem_without_masked_tokens(h, dtype):
    """No token masked: gem_loss skips the row selection; same value and gradient, input intact."""
    logits, labels = make_batch(n_masked=0, seed=31, scale=5.0)
    for z_in, y_in in ((logits, labels), (logits.transpose(0, 1), labels.t())):  # contiguous or not
        z_low = z_in.to(dtype)
        before = z_low.clone()
        z = z_low.clone().requires_grad_() if z_low.is_contiguous() else z_low.detach().requires_grad_()
        value = gem_loss(z, y_in, beta=0.6, h=h)
        value.backward()
        assert torch.equal(z.detach(), before)
        ref_z = z.detach().double().requires_grad_()
        ref = gem_torch_ref(ref_z, y_in, 0.6, h, detach=True)
        ref.backward()
        tol = dict(rel=1e-12) if dtype == torch.float64 else dict(rel=1e-5)
        assert value.item() == pytest.approx(ref.item(), **tol)
        assert z.grad.dtype == dtype and z.grad.shape == z.shape
        torch.testing.assert_close(z.grad.double(), ref_z.grad.to(dtype).double(),
                                   rtol=1e-10 if dtype == torch.float64 else 1e-2, atol=1e-14)


# --------------------------------------------------------------------------- 5: masking


LOSS_FNS = {
    "gem_linear": lambda z, y: gem_loss(z, y, beta=0.7, h="linear"),
    "gem_log_sigmoid": lambda z, y: gem_loss(z, y, beta=0.7, h="log_sigmoid"),
    "ce": ce_loss,
    "ce_entropy": lambda z, y: ce_entropy_loss(z, y, gamma=0.1),
    "token_entropy": token_entropy,
}


@pytest.mark.parametrize("name", list(LOSS_FNS))
def test_masked_tokens_change_nothing(name):
    fn = LOSS_FNS[name]
    logits, labels = make_batch(b=3, t=7, v=9, n_masked=8, seed=9)
    mask = labels != IGNORE
    only_unmasked = fn(logits[mask], labels[mask])  # (N, V) / (N,) layout
    garbage = logits.clone()
    garbage[~mask] = torch.tensor([float("nan"), float("inf"), -1e30]).repeat(3)[:9].double()
    value = fn(garbage, labels)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(only_unmasked.item(), rel=1e-12)


@pytest.mark.parametrize("name", list(LOSS_FNS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fully_masked_gives_zero_and_zero_gradient(name, dtype):
    fn = LOSS_FNS[name]
    logits, labels = make_batch(seed=10, dtype=dtype)
    logits[0, 0, 0] = float("inf")  # even an inf among the ignored logits stays harmless
    labels = torch.full_like(labels, IGNORE)
    z = logits.clone().requires_grad_()
    value = fn(z, labels)
    assert value.item() == 0.0 and not torch.isnan(value)
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    if name != "token_entropy":
        value.backward()
        assert z.grad is not None and torch.all(z.grad == 0)


# --------------------------------------------------------------------------- 6: errors


@pytest.mark.parametrize("beta", [0, 0.0, -1, -0.5, float("nan"), float("inf"), None, "0.7", True])
def test_bad_beta_raises(beta):
    logits, labels = make_batch()
    with pytest.raises(ValueError, match=r"\bbeta\b") as info:
        gem_loss(logits, labels, beta=beta)
    assert repr(beta) in str(info.value) and "\n" not in str(info.value)


def test_bad_h_raises():
    logits, labels = make_batch()
    with pytest.raises(ValueError, match=r"\bh\b.*'linear'.*'log_sigmoid'.*'foo'"):
        gem_loss(logits, labels, h="foo")


@pytest.mark.parametrize("name", [n for n in LOSS_FNS])
def test_shape_mismatch_raises(name):
    logits, labels = make_batch(b=2, t=5, v=7)
    with pytest.raises(ValueError, match=r"\(2, 5, 7\).*\(2, 4\)"):
        LOSS_FNS[name](logits, labels[:, :4])


@pytest.mark.parametrize("gamma", [-0.1, -1, float("nan"), float("inf")])
def test_bad_gamma_raises(gamma):
    logits, labels = make_batch()
    with pytest.raises(ValueError, match=r"\bgamma\b"):
        ce_entropy_loss(logits, labels, gamma=gamma)


def test_unknown_objective_raises():
    with pytest.raises(ValueError, match=r"unknown objective 'dpo'.*ce.*gem_log_sigmoid"):
        get_objective("dpo")


# --------------------------------------------------------------------------- 7: CE + entropy, gradcheck


@pytest.mark.parametrize("gamma", [0.0, 0.1, 1.0])
def test_ce_entropy_value(gamma):
    logits, labels = make_batch(seed=11)
    zn, yn = logits.numpy(), labels.numpy()
    mask = yn != IGNORE
    log_f = np_log_softmax(zn[mask])
    ce = -log_f[np.arange(mask.sum()), yn[mask]].mean()
    ent = -(np.exp(log_f) * log_f).sum(-1).mean()
    assert ce_entropy_loss(logits, labels, gamma=gamma).item() == pytest.approx(ce - gamma * ent, rel=1e-12)
    assert ce_loss(logits, labels).item() == pytest.approx(ce, rel=1e-12)
    assert token_entropy(logits, labels).item() == pytest.approx(ent, rel=1e-12)


def _tiny(seed):
    logits, labels = make_batch(b=2, t=3, v=5, n_masked=2, seed=seed)
    return logits.requires_grad_(), labels


@pytest.mark.parametrize("h", HS)
@pytest.mark.parametrize("beta", [0.5, 1.5])
def test_gem_gradcheck(h, beta):
    """Finite differences of the GEM *value* include dq/dz and dw/dz, which GEM's
    gradient leaves out by design. So check gem + (ref_full - ref_detached): its
    value is gem's value, and its analytic gradient equals the full derivative
    exactly when gem's own gradient equals the detached reference's."""
    z, labels = _tiny(12)

    def fn(x):
        full = gem_torch_ref(x, labels, beta, h, detach=False)
        semi = gem_torch_ref(x, labels, beta, h, detach=True)
        return gem_loss(x, labels, beta=beta, h=h) + (full - semi)

    assert torch.autograd.gradcheck(fn, (z,))
    # And without the correction the check must fail (q's dependence is real).
    assert not torch.autograd.gradcheck(
        lambda x: gem_loss(x, labels, beta=beta, h=h), (z,), raise_exception=False
    )


def test_ce_family_gradcheck():
    z, labels = _tiny(13)
    assert torch.autograd.gradcheck(lambda x: ce_entropy_loss(x, labels, gamma=0.3), (z,))
    assert torch.autograd.gradcheck(lambda x: ce_loss(x, labels), (z,))


# --------------------------------------------------------------------------- 8: low precision


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["gem_linear", "gem_log_sigmoid", "ce", "ce_entropy", "token_entropy"])
def test_low_precision_logits_give_float32(low, name):
    fn = LOSS_FNS[name]
    logits, labels = make_batch(b=4, t=16, v=64, n_masked=10, seed=14, scale=4.0, dtype=torch.float32)
    zl = logits.to(low).requires_grad_()
    zf = zl.detach().float().requires_grad_()  # same (rounded) values, float32
    out = fn(zl, labels)
    ref = fn(zf, labels)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=1e-6, abs=1e-7)
    assert out.item() == pytest.approx(fn(logits, labels).item(), rel=2e-2)  # unrounded float32
    if name != "token_entropy":
        out.backward()
        ref.backward()
        assert zl.grad.dtype == low
        torch.testing.assert_close(zl.grad.float(), zf.grad.to(low).float(), rtol=0, atol=0)


# --------------------------------------------------------------------------- 9: Proposition 2


P_DATA = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.07, 0.03], dtype=torch.float64)


def _expected_loss_descent(loss_fn, steps=2000, lr=1.0):
    """Gradient descent on free logits z of E_{y~p}[loss(z, y)].

    p has two-decimal probabilities, so 100 copies of z with label counts
    100 * p make the token mean over the batch exactly the expectation under p.
    """
    counts = torch.round(P_DATA * 100).long()
    assert counts.sum() == 100
    labels = torch.repeat_interleave(torch.arange(len(P_DATA)), counts)
    z = torch.randn(len(P_DATA), dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    z.requires_grad_()
    for _ in range(steps):
        (g,) = torch.autograd.grad(loss_fn(z.expand(100, -1), labels), z)
        with torch.no_grad():
            z -= lr * g
    return z.detach()


@pytest.mark.parametrize("beta", [0.5, 0.7])
def test_proposition2_gem_equilibrium(beta):
    # Proposition 2 is stated for linear h.
    z = _expected_loss_descent(lambda x, y: gem_loss(x, y, beta=beta, h="linear"))
    f = torch.softmax(z, dim=0)
    f_star = torch.softmax(beta * torch.log(P_DATA), dim=0)
    assert (f - f_star).abs().max() < 1e-4
    assert (torch.softmax(z / beta, dim=0) - P_DATA).abs().max() < 1e-4  # q* = p
    assert (f - P_DATA).abs().max() > 1e-2  # GEM does not just fit p
    # Proposition 3: f* maximises -KL(f || p) + gamma H(f) with 1/beta = gamma + 1,
    # here f* = p^(1/(gamma+1)) / Z, checked without reference to softmax.
    gamma = 1.0 / beta - 1.0
    prop3 = P_DATA ** (1.0 / (gamma + 1.0))
    assert (f - prop3 / prop3.sum()).abs().max() < 1e-4


def test_proposition2_ce_fits_data():
    z = _expected_loss_descent(ce_loss)
    assert (torch.softmax(z, dim=0) - P_DATA).abs().max() < 1e-4


# --------------------------------------------------------------------------- 10: registry


def test_registry_contents():
    assert set(OBJECTIVES) == {"ce", "ce_wd", "neft", "ce_entropy", "gem", "gem_log_sigmoid",
                               "dft", "ts2", "eaft", "asft"}  # the newer ones: tests/test_losses_newer.py
    for name, obj in OBJECTIVES.items():
        assert obj.name == name and get_objective(name) is obj
    assert [(o.loss, o.weight_decay, o.neftune_noise_alpha, o.entropy_gamma) for o in OBJECTIVES.values()] == [
        ("ce", 0.0, None, None),
        ("ce", 0.1, None, None),  # CE + WD, paper Section 6
        ("ce", 0.0, 5.0, None),  # NEFT noise scale 5, Appendix E
        ("ce_entropy", 0.0, None, 0.1),  # gamma 0.1, Appendix E
        ("gem", 0.0, None, None),
        ("gem", 0.0, None, None),
        ("dft", 0.0, None, None),
        ("ts2", 0.0, None, None),
        ("eaft", 0.0, None, None),
        ("asft", 0.0, None, None),
    ]
    assert {n: (o.h, o.uses_beta) for n, o in OBJECTIVES.items()} == {
        "ce": (None, False),
        "ce_wd": (None, False),
        "neft": (None, False),
        "ce_entropy": (None, False),
        "gem": ("linear", True),
        "gem_log_sigmoid": ("log_sigmoid", True),
        "dft": (None, False),
        "ts2": (None, False),
        "eaft": (None, False),
        "asft": (None, False),
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        OBJECTIVES["gem"].h = "log_sigmoid"
    assert set(LOSSES) == {"ce", "ce_entropy", "gem", "dft", "ts2", "eaft", "asft"}
    assert {o.loss for o in OBJECTIVES.values()} == set(LOSSES)
    # ce_entropy, ts2 and asft have no fused form (when the others run fused: gemsft.train.fused_choice)
    assert {k: e.fused is not None for k, e in LOSSES.items()} == {
        "ce": True, "ce_entropy": False, "gem": True, "dft": True, "ts2": False, "eaft": True, "asft": False}


def test_bind_loss_dispatch():
    logits, labels = make_batch(seed=16)
    same = lambda a, b: a.item() == pytest.approx(b.item(), rel=1e-12)  # noqa: E731
    bound = lambda name, beta=None: bind_loss(OBJECTIVES[name], beta)  # noqa: E731
    assert same(bound("gem", 0.5).logits(logits, labels), gem_loss(logits, labels, 0.5))
    assert same(bound("gem").logits(logits, labels), gem_loss(logits, labels, 0.7))  # the paper's default
    assert (bound("gem", 0.5).beta, bound("gem").beta, bound("ce").beta) == (0.5, 0.7, None)
    assert same(
        bound("gem_log_sigmoid", 0.5).logits(logits, labels),
        gem_loss(logits, labels, 0.5, h="log_sigmoid"),
    )
    assert not same(bound("gem", 0.5).logits(logits, labels), gem_loss(logits, labels, 0.7))
    for name in ("ce", "ce_wd", "neft"):
        assert same(bound(name).logits(logits, labels), ce_loss(logits, labels))
    assert same(bound("ce_entropy").logits(logits, labels), ce_entropy_loss(logits, labels, 0.1))
    # ignore_index is forwarded
    relabelled = torch.where(labels == IGNORE, torch.full_like(labels, -1), labels)
    assert same(bound("gem").logits(logits, relabelled, ignore_index=-1), gem_loss(logits, labels))
    # the fused forms get the same settings
    hidden, weight, head_labels = make_head_batch()
    assert same(bound("gem_log_sigmoid", 0.5).fused(hidden, weight, head_labels),
                fused_linear_gem_loss(hidden, weight, head_labels, beta=0.5, h="log_sigmoid"))
    assert same(bound("ce").fused(hidden, weight, head_labels), fused_linear_ce_loss(hidden, weight, head_labels))
    assert bound("ce_entropy").fused is None


def test_bind_loss_checks_beta_once_for_all_paths():
    with pytest.raises(ValueError, match=r"objective 'ce' does not use beta; got beta=0\.7"):
        bind_loss(OBJECTIVES["ce"], 0.7)
    with pytest.raises(ValueError, match=r"objective 'ce_entropy' does not use beta"):
        bind_loss(OBJECTIVES["ce_entropy"], 0.7)
    for bad in (0.0, -1, float("nan"), "0.7", True):
        with pytest.raises(ValueError, match=r"\bbeta\b"):
            bind_loss(OBJECTIVES["gem"], bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(loss="kl"),  # no such kind registered
        dict(loss="gem", h="linear"),  # uses_beta missing
        dict(loss="ce", uses_beta=True),
        dict(loss="gem", h="tanh", uses_beta=True),
        dict(loss="gem", uses_beta=True),  # h missing
        dict(loss="ce", h="linear"),
        dict(loss="ce_entropy"),  # gamma missing
        dict(loss="ce_entropy", entropy_gamma=-1.0),
        dict(loss="gem", h="linear", uses_beta=True, entropy_gamma=0.1),
    ],
)
def test_objective_rejects_inconsistent_settings(kwargs):
    with pytest.raises(ValueError, match="'x'|gamma|\\bh\\b"):
        bind_loss(Objective(name="x", **kwargs))


def test_a_new_loss_kind_is_one_function_and_one_registry_entry(monkeypatch):
    """A kind registered with its loss function and the settings it takes is bound like the others
    (the trainer side: tests/test_fused_training.py)."""

    def smoothed_ce(logits, labels, gamma, ignore_index=-100):  # a toy loss: gamma as label smoothing
        return F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=ignore_index,
                               label_smoothing=gamma)

    monkeypatch.setitem(LOSSES, "smoothed_ce", LossKind(logits=smoothed_ce, settings={"gamma": "entropy_gamma"}))
    logits, labels = make_batch(seed=17)
    loss = bind_loss(Objective(name="smooth", loss="smoothed_ce", entropy_gamma=0.2))
    assert loss.fused is None and loss.beta is None
    mask = labels != IGNORE
    log_f = torch.log_softmax(logits[mask], dim=-1)
    expected = (0.8 * -log_f.gather(1, labels[mask].unsqueeze(1)).squeeze(1) - 0.2 * log_f.mean(-1)).mean()
    assert loss.logits(logits, labels).item() == pytest.approx(expected.item(), rel=1e-12)
    with pytest.raises(ValueError, match="'smooth' does not use beta"):
        bind_loss(Objective(name="smooth", loss="smoothed_ce", entropy_gamma=0.2), 0.5)


def test_objectives_import_neither_torch_nor_the_losses():
    """No import circle: gemsft.objectives is data (the Snakefile's run matrix reads it), the losses
    import it, never the other way round."""
    code = ("import sys, gemsft.objectives; "
            "loaded = {'torch', 'gemsft.losses'} & set(sys.modules); assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- 11: fused linear + loss


def make_head_batch(lead=(3, 7), h=16, v=29, n_masked=5, seed=20, dtype=torch.float64, scale=1.0):
    """hidden (*lead, h), head weight (v, h) with logits of std ~2*scale, aligned labels with masks."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*lead, h, generator=g, dtype=torch.float64)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64) * (2.0 * scale / h**0.5)
    labels = torch.randint(0, v, lead, generator=g)
    flat = labels.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:n_masked]] = IGNORE
    return hidden.to(dtype), weight.to(dtype), labels


def value_and_grads(fn, hidden, weight):
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    value = fn(x, w)
    value.backward()
    return value.detach(), x.grad, w.grad


FUSED = {
    "gem_linear": (
        lambda x, w, y, **kw: fused_linear_gem_loss(x, w, y, beta=0.7, h="linear", **kw),
        lambda z, y: gem_loss(z, y, beta=0.7, h="linear"),
    ),
    "gem_log_sigmoid": (
        lambda x, w, y, **kw: fused_linear_gem_loss(x, w, y, beta=0.7, h="log_sigmoid", **kw),
        lambda z, y: gem_loss(z, y, beta=0.7, h="log_sigmoid"),
    ),
    "ce": (lambda x, w, y, **kw: fused_linear_ce_loss(x, w, y, **kw), ce_loss),
}


@pytest.mark.parametrize("chunk_size", [None, 1, 4, 5, 16, 1000])  # 16 of 21 rows: a short last chunk
@pytest.mark.parametrize("beta", [0.5, 0.7, 1.0, 2.0])
@pytest.mark.parametrize("h", HS)
def test_fused_gem_matches_gem_loss_of_materialised_logits(h, beta, chunk_size):
    hidden, weight, labels = make_head_batch(scale=3.0)
    fused = value_and_grads(
        lambda x, w: fused_linear_gem_loss(x, w, labels, beta=beta, h=h, chunk_size=chunk_size), hidden, weight
    )
    ref = value_and_grads(lambda x, w: gem_loss(x @ w.T, labels, beta=beta, h=h), hidden, weight)
    assert fused[0].dtype == torch.float64
    assert fused[0].item() == pytest.approx(ref[0].item(), rel=1e-12)
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(fused[2], ref[2], rtol=1e-10, atol=1e-14)
    assert torch.all(fused[1][labels == IGNORE] == 0)


@pytest.mark.parametrize("block_rows", [1, 3])
@pytest.mark.parametrize("name", list(FUSED))
def test_fused_blocks_and_default_chunks(monkeypatch, name, block_rows):
    """Elementwise work in blocks of a few rows inside a chunk, and the default chunk rule
    (a quarter of the tokens once the logits are big enough to chunk) give the same results."""
    from gemsft.losses import fused as fused_losses

    fused, unfused = FUSED[name]
    hidden, weight, labels = make_head_batch(scale=3.0, seed=32)
    v = weight.shape[0]
    monkeypatch.setattr(fused_losses, "_FUSED_BLOCK_BYTES", 4 * v * block_rows)
    monkeypatch.setattr(fused_losses, "_FUSED_MIN_CHUNK_BYTES", 0)
    assert fused_losses._chunk_rows(16, v, hidden.device, None) == 4
    ref = value_and_grads(lambda x, w: unfused(x @ w.T, labels), hidden, weight)
    for chunk_size in (None, 5):
        out = value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=chunk_size), hidden, weight)
        assert out[0].item() == pytest.approx(ref[0].item(), rel=1e-12)
        torch.testing.assert_close(out[1], ref[1], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(out[2], ref[2], rtol=1e-10, atol=1e-14)
        _, stats = fused(hidden, weight, labels, chunk_size=chunk_size, return_stats=True)
        assert stats.ce.item() == pytest.approx(ce_loss(hidden @ weight.T, labels).item(), rel=1e-12)
        assert stats.entropy.item() == pytest.approx(token_entropy(hidden @ weight.T, labels).item(), rel=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 3, 7])
def test_fused_ce_matches_ce_loss_and_torch(chunk_size):
    hidden, weight, labels = make_head_batch(scale=3.0, seed=21)
    fused = value_and_grads(lambda x, w: fused_linear_ce_loss(x, w, labels, chunk_size=chunk_size), hidden, weight)
    ref = value_and_grads(
        lambda x, w: F.cross_entropy((x @ w.T).reshape(-1, w.shape[0]), labels.reshape(-1), ignore_index=IGNORE),
        hidden, weight,
    )
    assert fused[0].item() == pytest.approx(ref[0].item(), rel=1e-12)
    torch.testing.assert_close(fused[1], ref[1], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(fused[2], ref[2], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", list(FUSED))
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_fused_stats_are_ce_and_entropy_of_the_logits(name, chunk_size):
    fused, _ = FUSED[name]
    hidden, weight, labels = make_head_batch(scale=4.0, seed=22)
    x = hidden.clone().requires_grad_()
    loss, stats = fused(x, weight, labels, chunk_size=chunk_size, return_stats=True)
    plain = fused(hidden, weight, labels, chunk_size=chunk_size)
    assert loss.item() == plain.item()  # the statistics do not change the loss
    logits = hidden @ weight.T
    assert not stats.ce.requires_grad and not stats.entropy.requires_grad
    assert stats.ce.item() == pytest.approx(ce_loss(logits, labels).item(), rel=1e-12)
    assert stats.entropy.item() == pytest.approx(token_entropy(logits, labels).item(), rel=1e-12)
    loss.backward()  # and the loss is still differentiable


def test_fused_small_entropy_is_accurate_in_float32():
    # Peaked rows: the entropy is small next to the logits; no cancellation may eat it.
    hidden, weight, labels = make_head_batch(scale=30.0, seed=23)
    _, stats = fused_linear_gem_loss(hidden.float(), weight.float(), labels, return_stats=True)
    exact = token_entropy(hidden @ weight.T, labels).item()
    assert exact < 0.2
    assert stats.entropy.item() == pytest.approx(exact, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", list(FUSED))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_fused_fully_masked_gives_zero_and_zero_gradients(name, dtype):
    fused, _ = FUSED[name]
    hidden, weight, labels = make_head_batch(dtype=dtype)
    labels = torch.full_like(labels, IGNORE)
    x, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    value, stats = fused(x, w, labels, return_stats=True)
    assert value.item() == 0.0 and value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert stats.ce.item() == 0.0 and stats.entropy.item() == 0.0
    value.backward()
    assert torch.all(x.grad == 0) and torch.all(w.grad == 0)


@pytest.mark.parametrize("name", list(FUSED))
@pytest.mark.parametrize("chunk_size", [None, 8])  # one chunk (bf16 matmuls as autograd's) / several
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_fused_low_precision_matches_materialised_logits(name, chunk_size, low):
    fused, unfused = FUSED[name]
    hidden, weight, labels = make_head_batch(lead=(4, 16), h=32, v=64, n_masked=10, seed=24, dtype=torch.float32)
    hidden, weight = hidden.to(low), weight.to(low)
    out = value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=chunk_size), hidden, weight)
    ref = value_and_grads(lambda x, w: unfused(x @ w.T, labels), hidden, weight)
    assert out[0].dtype == torch.float32
    assert out[0].item() == pytest.approx(ref[0].item(), rel=1e-5, abs=1e-6)  # same low-precision logits
    for got, want in zip(out[1:], ref[1:]):
        assert got.dtype == low
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=1e-4)
    # and against float32 throughout, loosely: rounding the inputs and logits is all that differs
    exact = value_and_grads(lambda x, w: fused(x, w, labels), hidden.float(), weight.float())
    assert out[0].item() == pytest.approx(exact[0].item(), rel=2e-2)


@pytest.mark.parametrize("h", HS)
def test_fused_under_autocast_matches_an_autocast_head(h):
    hidden, weight, labels = make_head_batch(lead=(2, 9), h=32, v=50, seed=25, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = value_and_grads(lambda x, w: fused_linear_gem_loss(x, w, labels, h=h, chunk_size=5), hidden, weight)
        ref = value_and_grads(
            lambda x, w: gem_loss(torch.nn.functional.linear(x, w), labels, h=h), hidden, weight
        )
    assert out[0].item() == pytest.approx(ref[0].item(), rel=1e-5)
    for got, want in zip(out[1:], ref[1:]):
        assert got.dtype == torch.float32  # gradients in the (float32) inputs' dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=1e-4)


def test_fused_gradient_is_scaled_by_grad_output_and_flows_through_a_graph():
    hidden, weight, labels = make_head_batch(seed=26)
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    h_in = x * 1.5  # a graph in front of the loss
    (0.25 * fused_linear_gem_loss(h_in, w, labels, chunk_size=4) + x.sum()).backward()
    _, gx, gw = value_and_grads(lambda a, b: gem_loss((1.5 * a) @ b.T, labels), hidden, weight)
    torch.testing.assert_close(x.grad, 0.25 * gx + 1.0, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(w.grad, 0.25 * gw, rtol=1e-10, atol=1e-14)


def test_fused_gradients_only_where_needed_and_no_grad_mode():
    hidden, weight, labels = make_head_batch(seed=27)
    ref = value_and_grads(lambda x, w: gem_loss(x @ w.T, labels), hidden, weight)
    x = hidden.clone().requires_grad_()
    frozen = weight.clone()  # e.g. a frozen head under LoRA
    fused_linear_gem_loss(x, frozen, labels, chunk_size=4).backward()
    torch.testing.assert_close(x.grad, ref[1], rtol=1e-10, atol=1e-14)
    w = weight.clone().requires_grad_()
    fused_linear_gem_loss(hidden, w, labels, chunk_size=4).backward()
    torch.testing.assert_close(w.grad, ref[2], rtol=1e-10, atol=1e-14)
    with torch.no_grad():
        value = fused_linear_gem_loss(x, w, labels, chunk_size=4)
    assert not value.requires_grad and value.item() == pytest.approx(ref[0].item(), rel=1e-12)


def test_fused_backward_runs_once():
    hidden, weight, labels = make_head_batch(seed=28)
    loss = fused_linear_gem_loss(hidden.requires_grad_(), weight, labels)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="single backward"):
        loss.backward()


def test_fused_inputs_are_not_modified():
    hidden, weight, labels = make_head_batch(seed=29, dtype=torch.float32)
    before = (hidden.clone(), weight.clone(), labels.clone())
    for name, (fused, _) in FUSED.items():
        fused(hidden.requires_grad_(), weight.requires_grad_(), labels, chunk_size=3, return_stats=True)[0].backward()
    assert all(torch.equal(a.detach(), b) for a, b in zip((hidden, weight, labels), before))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x, w, y: (x, w, y[:, :4]), r"hidden.shape\[:-1\] must equal labels.shape.*\(3, 7, 16\).*\(3, 4\)"),
        (lambda x, w, y: (x, w[:, :8], y), r"weight must be \(V, H\).*\(29, 8\)"),
        (lambda x, w, y: (x, w.float(), y), r"one dtype.*float64.*float32"),
        (lambda x, w, y: (x, w, y.float()), r"labels must be an integer tensor"),
        (lambda x, w, y: (x.long(), w, y), r"floating-point"),
    ],
)
def test_fused_bad_inputs_raise(change, message):
    args = change(*make_head_batch())
    for fused, _ in FUSED.values():
        with pytest.raises(ValueError, match=message):
            fused(*args)


@pytest.mark.parametrize("chunk_size", [0, -1, 2.0, True, "4"])
def test_fused_bad_chunk_size_raises(chunk_size):
    with pytest.raises(ValueError, match="chunk_size"):
        fused_linear_gem_loss(*make_head_batch(), chunk_size=chunk_size)


def test_fused_bad_beta_and_h_raise():
    with pytest.raises(ValueError, match=r"\bbeta\b"):
        fused_linear_gem_loss(*make_head_batch(), beta=0.0)
    with pytest.raises(ValueError, match=r"\bh\b.*'foo'"):
        fused_linear_gem_loss(*make_head_batch(), h="foo")


def _peak_tensor_bytes(fn) -> tuple[int, int]:
    """(peak live bytes of CPU tensors allocated while fn runs, largest single allocation)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # The allocator's running total of live bytes ("Total Allocated") is in the chrome trace.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    memory = [e["args"] for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    memory.sort(key=lambda a: a["Ev Idx"])
    # The running total carries over from earlier profiling in this process: count from its value
    # just before the first event.
    base = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return max(a["Total Allocated"] for a in memory) - base, max(a["Bytes"] for a in memory)


@pytest.mark.parametrize("name", list(FUSED))
def test_fused_never_holds_the_logits(name):
    """Peak live tensor memory of forward + backward stays far below the (N, V) logits.

    Measured from PyTorch's CPU allocation events (torch.profiler, profile_memory); the same
    measurement of the unfused loss exceeds the logits size, so the check can fail.
    """
    fused, unfused = FUSED[name]
    n, v, h = 512, 4096, 32
    g = torch.Generator().manual_seed(30)
    hidden = torch.randn(n, h, generator=g).requires_grad_()
    weight = (torch.randn(v, h, generator=g) / h**0.5).requires_grad_()
    labels = torch.randint(0, v, (n,), generator=g)
    logits_bytes = n * v * 4  # 8 MiB; weight.grad is 0.5 MiB

    def run_fused():
        fused(hidden, weight, labels, chunk_size=16, return_stats=True)[0].backward()

    def run_unfused():
        unfused(hidden @ weight.T, labels).backward()

    peak, largest = _peak_tensor_bytes(run_fused)
    # four (16, V) float32 buffers (1 MiB) + weight.grad (0.5 MiB) + small ones
    assert peak < 0.25 * logits_bytes and largest < 0.1 * logits_bytes
    peak_unfused, largest_unfused = _peak_tensor_bytes(run_unfused)
    assert peak_unfused > logits_bytes and largest_unfused >= logits_bytes
