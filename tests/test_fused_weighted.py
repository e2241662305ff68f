"""Fused losses with per-token weights (gemsft.losses.fused): CE with given constant weights, DFT and
EAFT, whose weights each chunk computes from its own rows of logits.

Each must equal its logits form (gemsft.losses.newer) in float64, in value and in the gradients w.r.t.
``hidden`` and the head ``weight``: with masked labels, chunk sizes that do and do not divide the
tokens, blocks inside a chunk, and an all-masked batch (an exact, attached 0). The weights are
constants: the references compute them explicitly and detach them, and a reference that does not
detach them has other gradients (so the comparison can tell).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gemsft.losses import (
    LOSSES,
    bind_loss,
    dft_loss,
    eaft_loss,
    fused_linear_ce_loss,
    fused_linear_dft_loss,
    fused_linear_eaft_loss,
    token_entropy,
)
from gemsft.losses import fused as fused_losses
from gemsft.losses.logits import ce_loss
from gemsft.losses.newer import EAFT_ENTROPY_NORM, EAFT_TOP_K
from gemsft.objectives import get_objective

IGNORE = -100
CHUNKS = [None, 1, 3, 5, 16, 1000]  # 16 unmasked rows: 3 and 5 leave a short last chunk

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_head_batch(lead=(3, 7), h=16, v=29, n_masked=5, seed=40, scale=3.0, dtype=torch.float64):
    """hidden (*lead, h), head weight (v, h) with logits of std ~2*scale, aligned labels, some masked."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*lead, h, generator=g, dtype=torch.float64)
    weight = torch.randn(v, h, generator=g, dtype=torch.float64) * (2.0 * scale / h**0.5)
    labels = torch.randint(0, v, lead, generator=g)
    flat = labels.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:n_masked]] = IGNORE
    return hidden.to(dtype), weight.to(dtype), labels


def make_token_weights(labels, seed=41):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(labels.shape, generator=g, dtype=torch.float64) * 2.0


def value_and_grads(fn, hidden, weight):
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    value = fn(x, w)
    value.backward()
    return value.detach(), x.grad, w.grad


# --------------------------------------------------------------------------- explicit references


def unmasked_log_probs(x, w, labels):
    """log softmax of the unmasked rows of x @ w.T, and log f_y of each."""
    z = (x @ w.T)[labels != IGNORE]
    log_f = F.log_softmax(z, dim=-1)
    return z, log_f.gather(1, labels[labels != IGNORE].unsqueeze(1)).squeeze(1)


def weighted_ce_reference(token_weights, detach=True):
    def loss(x, w, labels):
        _, log_f_y = unmasked_log_probs(x, w, labels)
        t = token_weights[labels != IGNORE]
        return -((t.detach() if detach else t) * log_f_y).sum() / log_f_y.numel()

    return loss


def dft_reference(detach=True):
    def loss(x, w, labels):
        _, log_f_y = unmasked_log_probs(x, w, labels)
        weight = log_f_y.exp()
        return -((weight.detach() if detach else weight) * log_f_y).mean()

    return loss


def eaft_reference(alpha, top_k=EAFT_TOP_K, norm=EAFT_ENTROPY_NORM, detach=True):
    def loss(x, w, labels):
        z, log_f_y = unmasked_log_probs(x, w, labels)
        top = z.topk(min(top_k, z.shape[-1]), dim=-1).values
        p = F.softmax(top, dim=-1)
        weight = (-(p * p.log()).sum(-1) / norm) ** alpha
        return -((weight.detach() if detach else weight) * log_f_y).mean()

    return loss


TW = make_token_weights(make_head_batch()[2])
# name: (fused(x, w, labels, **kw), logits form(z, labels) or None, explicit detached reference(x, w, labels))
CASES = {
    "ce_weighted": (lambda x, w, y, **kw: fused_linear_ce_loss(x, w, y, token_weights=TW, **kw), None,
                    weighted_ce_reference(TW)),
    "dft": (lambda x, w, y, **kw: fused_linear_dft_loss(x, w, y, **kw), dft_loss, dft_reference()),
    "eaft": (lambda x, w, y, **kw: fused_linear_eaft_loss(x, w, y, **kw), lambda z, y: eaft_loss(z, y, alpha=1.0),
             eaft_reference(1.0)),
    "eaft_alpha_0.5": (lambda x, w, y, **kw: fused_linear_eaft_loss(x, w, y, alpha=0.5, **kw),
                       lambda z, y: eaft_loss(z, y, alpha=0.5), eaft_reference(0.5)),
    "eaft_alpha_2": (lambda x, w, y, **kw: fused_linear_eaft_loss(x, w, y, alpha=2.0, **kw),
                     lambda z, y: eaft_loss(z, y, alpha=2.0), eaft_reference(2.0)),
}


def assert_same(out, ref):
    assert out[0].dtype == torch.float64
    assert out[0].item() == pytest.approx(ref[0].item(), rel=1e-12)
    torch.testing.assert_close(out[1], ref[1], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(out[2], ref[2], rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- equal to the logits form


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("name", list(CASES))
def test_fused_weighted_equals_logits_form_and_detached_reference(name, chunk_size):
    fused, logits_form, reference = CASES[name]
    hidden, weight, labels = make_head_batch()
    out = value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=chunk_size), hidden, weight)
    assert_same(out, value_and_grads(lambda x, w: reference(x, w, labels), hidden, weight))
    if logits_form is not None:
        assert_same(out, value_and_grads(lambda x, w: logits_form(x @ w.T, labels), hidden, weight))
    assert torch.all(out[1][labels == IGNORE] == 0)


@pytest.mark.parametrize("name", ["ce_weighted", "dft", "eaft"])
def test_weights_get_no_gradient(name):
    """The reference that differentiates through the weights has other gradients: the fused loss's
    are those of the detached one only. Given token weights that require grad get none."""
    fused, _, _ = CASES[name]
    hidden, weight, labels = make_head_batch(seed=42)
    attached = {"ce_weighted": weighted_ce_reference(TW, detach=False), "dft": dft_reference(detach=False),
                "eaft": eaft_reference(1.0, detach=False)}[name]
    tw = TW.clone().requires_grad_()
    if name == "ce_weighted":
        def fused(x, w, y, **kw):
            return fused_linear_ce_loss(x, w, y, token_weights=tw, **kw)
        attached = weighted_ce_reference(tw, detach=False)
    out = value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=5), hidden, weight)
    other = value_and_grads(lambda x, w: attached(x, w, labels), hidden, weight)
    assert out[0].item() == pytest.approx(other[0].item(), rel=1e-12)  # same value
    if name != "ce_weighted":  # given weights do not depend on hidden or weight
        assert not torch.allclose(out[1], other[1], rtol=1e-6, atol=1e-9)
        assert not torch.allclose(out[2], other[2], rtol=1e-6, atol=1e-9)
    tw.grad = None
    loss = fused_linear_ce_loss(hidden.clone().requires_grad_(), weight, labels, token_weights=tw)
    assert loss.requires_grad
    loss.backward()
    assert tw.grad is None


@pytest.mark.parametrize("block_rows", [1, 3])
@pytest.mark.parametrize("name", ["ce_weighted", "dft", "eaft"])
def test_blocks_inside_a_chunk_and_default_chunks(monkeypatch, name, block_rows):
    """Elementwise work in blocks of a few rows inside a chunk (the given weights sliced per block,
    the computed ones computed per block) and the default chunk rule give the same results."""
    fused, _, reference = CASES[name]
    hidden, weight, labels = make_head_batch(seed=43)
    v = weight.shape[0]
    monkeypatch.setattr(fused_losses, "_FUSED_BLOCK_BYTES", 4 * v * block_rows)
    monkeypatch.setattr(fused_losses, "_FUSED_MIN_CHUNK_BYTES", 0)
    ref = value_and_grads(lambda x, w: reference(x, w, labels), hidden, weight)
    for chunk_size in (None, 5, 7):
        assert_same(value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=chunk_size), hidden, weight), ref)


def test_eaft_vocabulary_under_top_k_and_other_settings():
    hidden, weight, labels = make_head_batch(v=13, seed=44)  # V < 20: all logits
    ref = value_and_grads(lambda x, w: eaft_loss(x @ w.T, labels), hidden, weight)
    assert_same(value_and_grads(lambda x, w: fused_linear_eaft_loss(x, w, labels, chunk_size=4), hidden, weight), ref)
    hidden, weight, labels = make_head_batch(seed=45)
    ref = value_and_grads(lambda x, w: eaft_loss(x @ w.T, labels, alpha=0.0, top_k=5, entropy_norm=2.0),
                          hidden, weight)
    out = value_and_grads(
        lambda x, w: fused_linear_eaft_loss(x, w, labels, alpha=0.0, top_k=5, entropy_norm=2.0, chunk_size=3),
        hidden, weight)
    assert_same(out, ref)
    assert_same(out, value_and_grads(lambda x, w: ce_loss(x @ w.T, labels), hidden, weight))  # alpha 0: CE


def test_unit_token_weights_are_ce_and_ignore_index_is_forwarded():
    hidden, weight, labels = make_head_batch(seed=46)
    ones = torch.ones(labels.shape, dtype=torch.float64)
    plain = value_and_grads(lambda x, w: fused_linear_ce_loss(x, w, labels, chunk_size=5), hidden, weight)
    assert_same(value_and_grads(
        lambda x, w: fused_linear_ce_loss(x, w, labels, chunk_size=5, token_weights=ones), hidden, weight), plain)
    relabelled = torch.where(labels == IGNORE, torch.full_like(labels, -1), labels)
    for fused in (lambda x, w, y, **kw: fused_linear_ce_loss(x, w, y, token_weights=TW, **kw),
                  fused_linear_dft_loss, fused_linear_eaft_loss):
        want = value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=3), hidden, weight)
        assert_same(value_and_grads(lambda x, w: fused(x, w, relabelled, ignore_index=-1, chunk_size=3),
                                    hidden, weight), want)


def test_grad_output_scales_the_gradients():
    hidden, weight, labels = make_head_batch(seed=47)
    once = value_and_grads(lambda x, w: fused_linear_dft_loss(x, w, labels, chunk_size=4), hidden, weight)
    twice = value_and_grads(lambda x, w: 2.0 * fused_linear_dft_loss(x, w, labels, chunk_size=4), hidden, weight)
    torch.testing.assert_close(twice[1], 2.0 * once[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(twice[2], 2.0 * once[2], rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- statistics, masking, dtypes


@pytest.mark.parametrize("name", ["ce_weighted", "dft", "eaft"])
def test_stats_are_the_unweighted_ce_and_entropy(name):
    fused, _, _ = CASES[name]
    hidden, weight, labels = make_head_batch(seed=48)
    x = hidden.clone().requires_grad_()
    loss, stats = fused(x, weight, labels, chunk_size=4, return_stats=True)
    assert loss.item() == fused(hidden, weight, labels, chunk_size=4).item()  # no grad path: same value
    logits = hidden @ weight.T
    assert not stats.ce.requires_grad and not stats.entropy.requires_grad
    assert stats.ce.item() == pytest.approx(ce_loss(logits, labels).item(), rel=1e-12)
    assert stats.entropy.item() == pytest.approx(token_entropy(logits, labels).item(), rel=1e-12)
    loss.backward()


@pytest.mark.parametrize("name", ["ce_weighted", "dft", "eaft"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_all_masked_is_an_exact_attached_zero(name, dtype):
    fused, _, _ = CASES[name]
    hidden, weight, labels = make_head_batch(dtype=dtype)
    labels = torch.full_like(labels, IGNORE)
    x, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    value, stats = fused(x, w, labels, return_stats=True)
    assert value.item() == 0.0 and value.requires_grad
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert stats.ce.item() == 0.0 and stats.entropy.item() == 0.0
    value.backward()
    assert torch.all(x.grad == 0) and torch.all(w.grad == 0)


@pytest.mark.parametrize("name", ["ce_weighted", "dft", "eaft"])
def test_float32_is_close_to_float64(name):
    fused, _, reference = CASES[name]
    hidden, weight, labels = make_head_batch(seed=49)
    ref = value_and_grads(lambda x, w: reference(x, w, labels), hidden, weight)
    out = value_and_grads(lambda x, w: fused(x, w, labels, chunk_size=5), hidden.float(), weight.float())
    assert out[0].dtype == torch.float32 and out[1].dtype == torch.float32 and out[2].dtype == torch.float32
    assert out[0].item() == pytest.approx(ref[0].item(), rel=1e-5)
    torch.testing.assert_close(out[1].double(), ref[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out[2].double(), ref[2], rtol=1e-4, atol=1e-6)


def test_bad_token_weights_and_settings_are_errors():
    hidden, weight, labels = make_head_batch()
    with pytest.raises(ValueError, match="token_weights must have the labels' shape"):
        fused_linear_ce_loss(hidden, weight, labels, token_weights=TW[:, :-1])
    with pytest.raises(ValueError, match="token_weights must be a floating-point tensor"):
        fused_linear_ce_loss(hidden, weight, labels, token_weights=torch.ones_like(labels))
    with pytest.raises(ValueError, match="token_weights must be a floating-point tensor"):
        fused_linear_ce_loss(hidden, weight, labels, token_weights=[1.0])
    with pytest.raises(ValueError, match=r"^fused_linear_eaft_loss alpha must be a finite number >= 0"):
        fused_linear_eaft_loss(hidden, weight, labels, alpha=-1.0)
    with pytest.raises(ValueError, match=r"^fused_linear_eaft_loss top_k must be an integer >= 1"):
        fused_linear_eaft_loss(hidden, weight, labels, top_k=0)
    with pytest.raises(ValueError, match=r"^fused_linear_eaft_loss entropy_norm must be a finite number > 0"):
        fused_linear_eaft_loss(hidden, weight, labels, entropy_norm=0.0)


# --------------------------------------------------------------------------- registry and choice


def test_registry_binds_the_fused_forms_with_their_settings():
    import dataclasses

    assert LOSSES["dft"].fused is fused_linear_dft_loss and LOSSES["eaft"].fused is fused_linear_eaft_loss
    assert LOSSES["ts2"].fused is None and LOSSES["asft"].fused is None
    hidden, weight, labels = make_head_batch(seed=50)
    same = lambda a, b: a.item() == pytest.approx(b.item(), rel=1e-12)  # noqa: E731
    assert same(bind_loss(get_objective("dft")).fused(hidden, weight, labels), dft_loss(hidden @ weight.T, labels))
    assert same(bind_loss(get_objective("eaft")).fused(hidden, weight, labels),
                eaft_loss(hidden @ weight.T, labels, alpha=1.0))
    changed = bind_loss(dataclasses.replace(get_objective("eaft"), eaft_alpha=0.5))
    assert same(changed.fused(hidden, weight, labels), eaft_loss(hidden @ weight.T, labels, alpha=0.5))
    loss, stats = bind_loss(get_objective("dft")).fused(hidden, weight, labels, return_stats=True)
    assert same(stats.ce, ce_loss(hidden @ weight.T, labels))
