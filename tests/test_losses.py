"""Tests for gemsft.losses against independent float64 references.

References are written from the formulas (explicit exp/sum in numpy or torch),
not by calling the code under test. GEM's q = softmax(z / beta) and the
log-sigmoid weights are constants for the gradient, so the gradient GEM
trains with is not the derivative of its value; the gradcheck tests account for
that explicitly (see ``test_gem_gradcheck``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gemsft.losses import (
    OBJECTIVES,
    Objective,
    ce_entropy_loss,
    ce_loss,
    gem_listing1_loss,
    gem_loss,
    get_objective,
    shift_for_causal_lm,
    token_entropy,
)

IGNORE = -100
BETAS = [0.5, 0.7, 1.0, 2.0]
HS = ["linear", "log_sigmoid"]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Every tensor here is tiny; on a busy 2-core machine waking intra-op threads
    # costs milliseconds per kernel (thousands of calls in the descent tests).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    assert set(OBJECTIVES) == {"ce", "ce_wd", "neft", "ce_entropy", "gem", "gem_log_sigmoid"}
    for name, obj in OBJECTIVES.items():
        assert obj.name == name and get_objective(name) is obj
    assert [(o.loss, o.weight_decay, o.neftune_noise_alpha, o.entropy_gamma) for o in OBJECTIVES.values()] == [
        ("ce", 0.0, None, None),
        ("ce", 0.1, None, None),  # CE + WD, paper Section 6
        ("ce", 0.0, 5.0, None),  # NEFT noise scale 5, Appendix E
        ("ce_entropy", 0.0, None, 0.1),  # gamma 0.1, Appendix E
        ("gem", 0.0, None, None),
        ("gem", 0.0, None, None),
    ]
    assert {n: (o.h, o.uses_beta) for n, o in OBJECTIVES.items()} == {
        "ce": (None, False),
        "ce_wd": (None, False),
        "neft": (None, False),
        "ce_entropy": (None, False),
        "gem": ("linear", True),
        "gem_log_sigmoid": ("log_sigmoid", True),
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        OBJECTIVES["gem"].h = "log_sigmoid"


def test_objective_compute_dispatch():
    logits, labels = make_batch(seed=16)
    same = lambda a, b: a.item() == pytest.approx(b.item(), rel=1e-12)  # noqa: E731
    assert same(OBJECTIVES["gem"].compute(logits, labels, beta=0.5), gem_loss(logits, labels, 0.5))
    assert same(OBJECTIVES["gem"].compute(logits, labels), gem_loss(logits, labels, 0.7))
    assert same(
        OBJECTIVES["gem_log_sigmoid"].compute(logits, labels, beta=0.5),
        gem_loss(logits, labels, 0.5, h="log_sigmoid"),
    )
    assert not same(OBJECTIVES["gem"].compute(logits, labels, beta=0.5), gem_loss(logits, labels, 0.7))
    for name in ("ce", "ce_wd", "neft"):
        assert same(OBJECTIVES[name].compute(logits, labels), ce_loss(logits, labels))
    assert same(OBJECTIVES["ce_entropy"].compute(logits, labels), ce_entropy_loss(logits, labels, 0.1))
    # ignore_index is forwarded
    relabelled = torch.where(labels == IGNORE, torch.full_like(labels, -1), labels)
    assert same(OBJECTIVES["gem"].compute(logits, relabelled, ignore_index=-1), gem_loss(logits, labels))
    with pytest.raises(ValueError, match="beta"):
        OBJECTIVES["ce"].compute(logits, labels, beta=0.7)
    with pytest.raises(ValueError, match="beta"):
        OBJECTIVES["gem"].compute(logits, labels, beta=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(loss="kl"),
        dict(loss="gem", h="linear"),  # uses_beta missing
        dict(loss="gem", h="tanh", uses_beta=True),
        dict(loss="ce", h="linear"),
        dict(loss="ce_entropy"),  # gamma missing
        dict(loss="ce_entropy", entropy_gamma=-1.0),
    ],
)
def test_objective_rejects_inconsistent_settings(kwargs):
    with pytest.raises(ValueError):
        Objective(name="x", **kwargs)
