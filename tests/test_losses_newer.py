"""The newer SFT objectives (gemsft.losses.newer: DFT, TS², EAFT, ASFT) against float64 references.

Each reference is written from the official code's formula, token by token in float64 numpy, value and
gradient w.r.t. the logits (the gradient derived by hand, not by autograd), and the loss under test
must match both, with masked labels. DFT is also checked against TRL 1.16's own SFTTrainer DFT loss.
The trainer side: each objective trains two steps of a tiny random Llama, ASFT with its frozen
reference copy of the starting model.
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from gemsft.losses import (
    LOSSES,
    LossKind,
    asft_loss,
    bind_loss,
    dft_loss,
    eaft_loss,
    shift_for_causal_lm,
    ts2_loss,
)
from gemsft.objectives import OBJECTIVES, Objective, get_objective

IGNORE = -100
NEWER = ("dft", "ts2", "eaft", "asft")
FUSED_NEWER = ("dft", "eaft")  # with a fused form (tests/test_fused_weighted.py); ts2 and asft have none

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- data + references


def make_batch(b=3, t=6, v=37, n_masked=5, seed=0, scale=2.0, dtype=torch.float64):
    """Random logits (b, t, v), labels (b, t) with ``n_masked`` ignored, and reference logits."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    ref_logits = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    flat = labels.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:n_masked]] = IGNORE
    return logits, labels, ref_logits


def np_log_softmax(x):
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def sparsemax_bisect(z, iters=200):
    """sparsemax(z) = argmin_{p in simplex} ||p - z||: p = max(z - tau, 0) with sum p = 1, tau found
    by bisection (an algorithm independent of the sorting one under test)."""
    lo, hi = z.max() - 1.0, z.max()  # sum(max(z - lo, 0)) >= 1 >= sum(max(z - hi, 0)) = 0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(z - mid, 0).sum() > 1.0 else (lo, mid)
    tau = (lo + hi) / 2
    return np.maximum(z - tau, 0.0), tau


def per_token(reference, logits, labels, *extra):
    """Mean of ``reference(z_row, y, *extra_rows) -> (value, grad_row)`` over unmasked tokens, and the
    gradient of that mean w.r.t. ``logits`` (zero on masked rows); float64 numpy."""
    z = logits.detach().double().numpy().reshape(-1, logits.shape[-1])
    y = labels.numpy().reshape(-1)
    extra = [e.detach().double().numpy().reshape(-1, logits.shape[-1]) for e in extra]
    n = int((y != IGNORE).sum())
    value, grad = 0.0, np.zeros_like(z)
    for i in range(len(y)):
        if y[i] == IGNORE:
            continue
        v, g = reference(z[i], int(y[i]), *(e[i] for e in extra))
        value += v / n
        grad[i] = g / n
    return value, grad.reshape(tuple(logits.shape))


def dft_token(z, y):
    """DFT (Wu et al. 2025, arXiv 2508.05629): -sg(f_y) log f_y; gradient f_y (f - e_y)."""
    log_f = np_log_softmax(z)
    f = np.exp(log_f)
    onehot = np.eye(len(z))[y]
    return -f[y] * log_f[y], f[y] * (f - onehot)


def ts2_token(z, y, alpha):
    """TS²: the sparsemax loss -z_y + 1/2 sum_{j in S}(z_j^2 - tau^2) + 1/2 (Martins & Astudillo 2016,
    Eq. 18; gradient p - e_y) plus alpha * -log(1 - min(s, 0.99)), s the softmax mass of the tokens
    outside the support S other than y; gradient of -log(1 - s): f_k (1[k outside] - s) / (1 - s)."""
    p, tau = sparsemax_bisect(z)
    support = p > 0
    sparse = -z[y] + 0.5 * (z[support] ** 2 - tau**2).sum() + 0.5
    onehot = np.eye(len(z))[y]
    f = np.exp(np_log_softmax(z))
    outside = (~support) & (onehot == 0)
    s = f[outside].sum()
    if s < 0.99:
        value, grad_s = -np.log(1.0 - s), f * (outside - s) / (1.0 - s)
    else:  # the official clamp: a constant
        value, grad_s = -np.log(1.0 - 0.99), np.zeros_like(z)
    return sparse + alpha * value, p - onehot + alpha * grad_s


def eaft_token(z, y, alpha, k=20, norm=3.0):
    """EAFT: w * -log f_y with the constant w = (H(softmax(top-k logits)) / 3)^alpha; gradient
    w (f - e_y)."""
    top = np.sort(z)[::-1][: min(k, len(z))]
    log_top = np_log_softmax(top)
    w = (-(np.exp(log_top) * log_top).sum() / norm) ** alpha
    log_f = np_log_softmax(z)
    return -w * log_f[y], w * (np.exp(log_f) - np.eye(len(z))[y])


def asft_token(z, y, z_ref, alpha):
    """ASFT: DFT + alpha * sum_j q_j (log q_j - log f_j), q = softmax(z_ref) constant; gradient
    f_y (f - e_y) + alpha (f - q)."""
    dft_value, dft_grad = dft_token(z, y)
    log_f, log_q = np_log_softmax(z), np_log_softmax(z_ref)
    q = np.exp(log_q)
    return dft_value + alpha * (q * (log_q - log_f)).sum(), dft_grad + alpha * (np.exp(log_f) - q)


def check_against(loss_fn, reference, logits, labels, *extra, rtol=1e-10, atol=1e-12):
    logits = logits.detach().clone().requires_grad_(True)
    loss = loss_fn(logits, labels, *extra)
    loss.backward()
    value, grad = per_token(reference, logits, labels, *extra)
    assert loss.item() == pytest.approx(value, rel=rtol, abs=atol)
    np.testing.assert_allclose(logits.grad.double().numpy(), grad, rtol=rtol, atol=atol)
    return loss


# --------------------------------------------------------------------------- float64 references


@pytest.mark.parametrize("seed", [0, 1])
def test_dft_matches_float64_reference(seed):
    """Transcribes TRL 1.16 trl/trainer/sft_trainer.py SFTTrainer.compute_loss, loss_type="dft"
    (per_token_loss * log_probs.exp().detach()), the DFT paper's loss (arXiv 2508.05629)."""
    logits, labels, _ = make_batch(seed=seed)
    check_against(lambda z, y: dft_loss(z, y), dft_token, logits, labels)


@pytest.mark.parametrize("alpha", [0.25, 0.0, 10.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_ts2_matches_float64_reference(alpha, seed):
    """Transcribes xzy-bit/TS-2-ICLR-2026 trainer.py SFTTrainer.ts2_loss (entmax's sparsemax and
    sparsemax_loss, the suppression term clamped at 0.99); alpha 0.25 from train_ts2_ultrafeedback.sh."""
    logits, labels, _ = make_batch(seed=seed, scale=1.0)
    # the cases occur: supports of several tokens, labels outside their support
    rows = [(sparsemax_bisect(z)[0] > 0, y) for z, y in zip(logits.view(-1, 37).numpy(), labels.view(-1).tolist())
            if y != IGNORE]
    assert any(s.sum() > 1 for s, _ in rows) and any(not s[y] for s, y in rows)
    check_against(lambda z, y: ts2_loss(z, y, alpha=alpha), lambda z, y: ts2_token(z, y, alpha), logits, labels,
                  rtol=1e-9, atol=1e-11)


def test_ts2_clamped_suppression_and_label_outside_the_support():
    """Rows whose softmax mass outside the sparsemax support exceeds 0.99 (the official clamp: the
    suppression term is then constant), with the label inside and outside the support."""
    v = 1000
    logits = torch.zeros(2, 2, v, dtype=torch.float64)
    logits[..., 0] = 1.5  # support {0}; softmax mass outside: 999 / (e^1.5 + 999) > 0.99
    logits[1, :, 1] = 1.2  # support {0, 1}; outside mass 998 / (e^1.5 + e^1.2 + 998) > 0.99
    labels = torch.tensor([[0, 7], [1, 250]])
    for z, y in zip(logits.view(-1, v).numpy(), labels.view(-1).tolist()):
        outside = sparsemax_bisect(z)[0] == 0
        outside[y] = False
        assert np.exp(np_log_softmax(z))[outside].sum() > 0.99
    loss = check_against(lambda z, y: ts2_loss(z, y, alpha=0.25), lambda z, y: ts2_token(z, y, 0.25), logits,
                         labels)
    assert loss.item() > 0.25 * -np.log(0.01)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0, 0.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_eaft_matches_float64_reference(alpha, seed):
    """Transcribes PRIS-CV/EAFT's ms-swift-EAFT swift/trainers/utils.py per_token_loss_func
    (enable_eaft_loss: top-20 entropy / 3.0, to the power eaft_alpha = 1.0 of swift/trainers/arguments.py,
    under torch.no_grad)."""
    logits, labels, _ = make_batch(seed=seed)
    check_against(lambda z, y: eaft_loss(z, y, alpha=alpha), lambda z, y: eaft_token(z, y, alpha), logits, labels)


def test_eaft_vocabulary_under_top_k_uses_all_logits():
    logits, labels, _ = make_batch(v=7, seed=3)
    check_against(lambda z, y: eaft_loss(z, y), lambda z, y: eaft_token(z, y, 1.0), logits, labels)


@pytest.mark.parametrize("alpha", [0.1, 0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_asft_matches_float64_reference(alpha, seed):
    """Transcribes zhuchichi56/ASFT train_v2.py EnhancedTrainer.compute_loss, mode "asft": DFT weights
    plus kl_weight (0.1) * F.kl_div(log_softmax(z), softmax(z_ref)).sum(-1), token mean."""
    logits, labels, ref_logits = make_batch(seed=seed)
    loss = check_against(lambda z, y, r: asft_loss(z, y, r, alpha=alpha),
                         lambda z, y, r: asft_token(z, y, r, alpha), logits, labels, ref_logits)
    # the reference logits are constants: no gradient reaches them
    ref = ref_logits.clone().requires_grad_(True)
    z = logits.clone().requires_grad_(True)
    asft_loss(z, labels, ref, alpha=alpha).backward()
    assert ref.grad is None
    # at the reference itself the KL vanishes: ASFT is DFT
    same = asft_loss(logits, labels, logits.clone(), alpha=alpha)
    assert same.item() == pytest.approx(dft_loss(logits, labels).item(), rel=1e-12)
    assert loss.item() >= dft_loss(logits, labels).item() - 1e-12


def call(name, logits, labels, **kwargs):
    fn = {"dft": dft_loss, "ts2": ts2_loss, "eaft": eaft_loss, "asft": asft_loss}[name]
    extra = (logits.detach().flip(-1),) if name == "asft" else ()
    return fn(logits, labels, *extra, **kwargs)


@pytest.mark.parametrize("name", NEWER)
def test_ignore_index_masking_and_float32(name):
    logits, labels, _ = make_batch(seed=5)
    expected = call(name, logits, labels)
    relabelled = torch.where(labels == IGNORE, torch.full_like(labels, -1), labels)
    assert call(name, logits, relabelled, ignore_index=-1).item() == pytest.approx(expected.item(), rel=1e-12)
    # changing the logits of masked positions changes nothing
    changed = torch.where((labels == IGNORE).unsqueeze(-1), logits * 7.0 + 3.0, logits)
    assert call(name, changed, labels).item() == pytest.approx(expected.item(), rel=1e-12)
    # float32 and bf16 logits: computed in float32, close to the same values in float64
    for low in (torch.float32, torch.bfloat16):
        got = call(name, logits.to(low), labels)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(call(name, logits.to(low).double(), labels).item(), rel=1e-5)


@pytest.mark.parametrize("name", NEWER)
def test_fully_masked_gives_zero_and_zero_gradient(name):
    logits, labels, _ = make_batch(n_masked=18, seed=6, dtype=torch.float32)
    logits.requires_grad_(True)
    loss = call(name, logits, labels)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("name", NEWER)
def test_minus_inf_logits_stay_finite(name):
    logits, labels, _ = make_batch(seed=7)
    logits[..., 3] = float("-inf")  # a banned token, never a label here
    labels = torch.where(labels == 3, torch.full_like(labels, 4), labels)
    logits.requires_grad_(True)
    extra = (logits.detach().clone(),) if name == "asft" else ()
    fn = {"dft": dft_loss, "ts2": ts2_loss, "eaft": eaft_loss, "asft": asft_loss}[name]
    loss = fn(logits, labels, *extra)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- TRL's DFT


def tiny_llama(seed=0, vocab=64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a sharper random head: probabilities far from uniform
        model.get_output_embeddings().weight.mul_(10.0)
    return model


def trl_dft_loss(model, batch, num_items_in_batch=None):
    """TRL 1.16's own DFT loss: SFTTrainer.compute_loss with args.loss_type = "dft", run on `model`
    patched with TRL's fused LM head as SFTTrainer.__init__ does; `self` is a stand-in holding the
    few attributes compute_loss reads (one process, no metrics gathering)."""
    from trl import SFTTrainer
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))

    class OneProcess:
        parallelism_config = None
        num_processes = 1

        def gather_for_metrics(self, x):
            return x

    stand_in = types.SimpleNamespace(
        model=model, aux_loss_enabled=False, accelerator=OneProcess(), compute_loss_func=None, label_smoother=None,
        args=types.SimpleNamespace(loss_type="dft", average_tokens_across_devices=False),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
        get_tp_size=lambda: 1)
    return SFTTrainer.compute_loss(stand_in, model, dict(batch), num_items_in_batch=num_items_in_batch)


def test_dft_equals_trls_sft_trainer_dft_loss():
    """Same model, same batch (prompt tokens and right padding masked with -100): TRL's DFT loss and
    dft_loss of the model's logits agree in value and in every parameter's gradient. TRL divides by
    num_items_in_batch when the Trainer passes it (gradient accumulation); dft_loss is the
    micro-batch's token mean, which is TRL's with num_items_in_batch = the micro-batch's count."""
    ids = torch.randint(1, 64, (3, 10), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :3] = IGNORE
    mask = torch.ones_like(ids)
    labels[2, 6:], mask[2, 6:] = IGNORE, 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    ours_model, trl_model = tiny_llama(), tiny_llama()
    ours_model.train()
    trl_model.train()

    theirs = trl_dft_loss(trl_model, batch)
    theirs.backward()
    logits = ours_model(input_ids=ids, attention_mask=mask).logits
    ours = dft_loss(*shift_for_causal_lm(logits, labels))
    ours.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    for (name, a), (_, b) in zip(ours_model.named_parameters(), trl_model.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7, msg=name)
    count = int((labels[:, 1:] != IGNORE).sum())
    with torch.no_grad():
        assert trl_dft_loss(trl_model, batch, num_items_in_batch=count).item() == pytest.approx(ours.item(), rel=1e-5)
        assert trl_dft_loss(trl_model, batch, num_items_in_batch=2 * count).item() == pytest.approx(
            ours.item() / 2, rel=1e-5)


# --------------------------------------------------------------------------- registry and settings


def test_registry_entries_of_the_newer_objectives():
    for name in NEWER:
        objective = get_objective(name)
        kind = LOSSES[objective.loss]
        assert objective.loss == name and not objective.uses_beta and (kind.fused is not None) == (name in FUSED_NEWER)
        assert kind.reference == (name == "asft")
    assert [OBJECTIVES[n].ts2_alpha for n in NEWER] == [None, 0.25, None, None]
    assert [OBJECTIVES[n].eaft_alpha for n in NEWER] == [None, None, 1.0, None]
    assert [OBJECTIVES[n].asft_alpha for n in NEWER] == [None, None, None, 0.1]
    with pytest.raises(ValueError, match="reference logits has no fused form"):
        LossKind(logits=asft_loss, fused=lambda *a, **k: None, reference=True)


def test_bind_loss_for_each_newer_objective():
    logits, labels, ref_logits = make_batch(seed=11)
    same = lambda a, b: a.item() == pytest.approx(b.item(), rel=1e-12)  # noqa: E731
    bound = {name: bind_loss(get_objective(name)) for name in NEWER}
    assert all((b.fused is not None) == (n in FUSED_NEWER) and b.beta is None and b.objective == n
               for n, b in bound.items())
    assert [b.reference for b in bound.values()] == [False, False, False, True]
    assert same(bound["dft"].logits(logits, labels), dft_loss(logits, labels))
    assert same(bound["ts2"].logits(logits, labels), ts2_loss(logits, labels, alpha=0.25))
    assert same(bound["eaft"].logits(logits, labels), eaft_loss(logits, labels, alpha=1.0))
    assert same(bound["asft"].logits(logits, labels, ref_logits), asft_loss(logits, labels, ref_logits, alpha=0.1))
    relabelled = torch.where(labels == IGNORE, torch.full_like(labels, -1), labels)
    assert same(bound["ts2"].logits(logits, relabelled, ignore_index=-1), ts2_loss(logits, labels))
    # a setting replaced (as train.objective_overrides does) reaches the loss
    changed = bind_loss(dataclasses.replace(get_objective("ts2"), ts2_alpha=3.0))
    assert same(changed.logits(logits, labels), ts2_loss(logits, labels, alpha=3.0))
    for name in NEWER:
        with pytest.raises(ValueError, match=f"objective '{name}' does not use beta"):
            bind_loss(get_objective(name), 0.7)


@pytest.mark.parametrize("setting", ["ts2_alpha", "eaft_alpha", "asft_alpha"])
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "0.1", True])
def test_bad_setting_is_a_one_line_error_naming_it(setting, bad):
    loss = setting.split("_")[0]
    with pytest.raises(ValueError, match=rf"^{setting} must be a finite number >= 0; got") as err:
        Objective(name="x", loss=loss, **{setting: bad})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=rf"^{loss}_loss alpha must be a finite number >= 0; got") as err:
        call(loss, *make_batch()[:2], alpha=bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="ts2"), "'x': loss 'ts2' needs ts2_alpha"),
    (dict(loss="dft", ts2_alpha=0.25), "'x': loss 'dft' does not use ts2_alpha"),
    (dict(loss="eaft", eaft_alpha=1.0, asft_alpha=0.1), "'x': loss 'eaft' does not use asft_alpha"),
    (dict(loss="asft", asft_alpha=0.1, uses_beta=True), "'x': uses_beta must be False"),
])
def test_settings_that_do_not_fit_the_kind(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bind_loss(Objective(name="x", **kwargs))


def test_other_bad_arguments():
    logits, labels, ref_logits = make_batch()
    for top_k in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"^eaft_loss top_k must be an integer >= 1"):
            eaft_loss(logits, labels, top_k=top_k)
    with pytest.raises(ValueError, match=r"^eaft_loss entropy_norm must be a finite number > 0"):
        eaft_loss(logits, labels, entropy_norm=0.0)
    with pytest.raises(ValueError, match=r"^asft_loss needs ref_logits of the logits' shape"):
        asft_loss(logits, labels, ref_logits[:, :-1])
    with pytest.raises(ValueError, match="logits.shape"):
        dft_loss(logits[:, :-1], labels)


# --------------------------------------------------------------------------- the trainer


@pytest.mark.parametrize("setting", [True, "auto", None])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_fused_loss_setting_falls_back_to_logits(setting, device):
    from gemsft.train.fused_choice import choose_fused_loss

    for name in NEWER:
        choice = choose_fused_loss(setting, device, name, bind_loss(get_objective(name)).fused is not None)
        if name not in FUSED_NEWER:
            assert not choice.value and choice.reason == f"on logits: loss {name!r} has no fused form"
        elif setting is True:  # dft, eaft: fused when set
            assert choice.value and choice.reason == "set in the config"
        elif device == "cpu":  # auto: measured faster on a CPU (benchmarks/results/loss_bench_cpu.txt)
            assert choice.value and choice.reason.startswith("fused: not slower on cpu (")
        else:  # auto: not measured on CUDA, so on logits
            assert not choice.value and choice.reason == f"fused loss {name!r} not measured on {device}: on logits"


class Rows(torch.utils.data.Dataset):
    """Prompt/answer rows of varying length: prompt tokens and right padding masked."""

    def __init__(self, n=8, vocab=64, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.rows = []
        for _ in range(n):
            ids = torch.randint(1, vocab, (int(torch.randint(6, 12, (1,), generator=g)),), generator=g)
            labels = ids.clone()
            labels[:3] = IGNORE
            self.rows.append({"input_ids": ids, "labels": labels})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def collate(rows):
    t = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": torch.zeros(len(rows), t, dtype=torch.long),
             "attention_mask": torch.zeros(len(rows), t, dtype=torch.long),
             "labels": torch.full((len(rows), t), IGNORE)}
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        batch["input_ids"][i, :n], batch["labels"][i, :n], batch["attention_mask"][i, :n] = \
            r["input_ids"], r["labels"], 1
    return batch


def test_each_newer_objective_trains_through_the_trainer(tmp_path):
    """Two optimizer steps per objective on a tiny random Llama; train.fused_loss true runs DFT and EAFT
    fused and falls back to the logits with its reason for TS² and ASFT. ASFT's reference is a frozen
    copy of the starting model that the training
    leaves untouched, and its loss is asft_loss against that copy's logits."""
    from gemsft.train.trainer import ObjectiveTrainer, training_arguments

    cfg = {"epochs": 1, "max_steps": 2, "per_device_batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0,
           "logging_steps": 1, "save_steps": 1000, "save_total_limit": 1}
    batch = collate([Rows()[i] for i in range(4)])
    for name in NEWER:
        model = tiny_llama()
        start = copy.deepcopy(model)
        args = training_arguments(cfg, tmp_path / name, seed=0)
        trainer = ObjectiveTrainer(model=model, args=args, train_dataset=Rows(), data_collator=collate,
                                   objective=get_objective(name), fused_loss=True)
        if name in FUSED_NEWER:  # dft and eaft train fused when set
            assert trainer.fused_loss and trainer.fused_choice.reason == "set in the config"
        else:
            assert not trainer.fused_loss and "has no fused form" in trainer.fused_choice.reason
        if name == "asft":
            reference = trainer.reference_model
            assert reference is not model and not reference.training
            assert not any(p.requires_grad for p in reference.parameters())
            with torch.no_grad():  # move the model away from where it started: KL(reference || model) > 0
                model.get_output_embeddings().weight.add_(torch.randn_like(model.get_output_embeddings().weight))
                inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
                got = trainer.compute_loss(model, dict(batch))
                # the trainer's loss is asft_loss against the starting model's logits
                want = asft_loss(*shift_for_causal_lm(model(**inputs).logits, batch["labels"]),
                                 shift_for_causal_lm(start(**inputs).logits, batch["labels"])[0], alpha=0.1)
            torch.testing.assert_close(got, want)
            assert got > dft_loss(*shift_for_causal_lm(model(**inputs).logits, batch["labels"]))
            start_copy = copy.deepcopy(start)
        else:
            assert trainer.reference_model is None
        with torch.no_grad():
            before = trainer.compute_loss(model, dict(batch)).item()
        trainer.train()
        logs = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        assert trainer.state.global_step == 2 and len(logs) == 2 and all(np.isfinite(logs))
        with torch.no_grad():
            after = trainer.compute_loss(model, dict(batch)).item()
        assert np.isfinite(after) and after != before, name
        assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters()))
        if name == "asft":  # the reference is still the starting model
            for (n, p), (_, q) in zip(trainer.reference_model.named_parameters(), start_copy.named_parameters()):
                assert torch.equal(p, q) and p.grad is None, n


@pytest.mark.parametrize("objective, key", [("ts2", "ts2_alpha"), ("eaft", "eaft_alpha"), ("asft", "asft_alpha")])
def test_config_overrides_each_newer_alpha(objective, key):
    """`train.objective_overrides` accepts each new setting (the schema) and the trainer's objective
    carries it (gemsft.train.sft.configured_objective); a negative value is refused naming the key."""
    import yaml

    from gemsft.config import validate_config
    from gemsft.train.sft import configured_objective

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    config["train"]["objective_overrides"] = {objective: {key: 0.5}}
    validate_config(config, str(repo / "config/schema/config.schema.yaml"))
    assert getattr(configured_objective(objective, config["train"]), key) == 0.5
    config["train"]["objective_overrides"] = {objective: {key: -1}}
    with pytest.raises(ValueError, match=key):
        validate_config(config, str(repo / "config/schema/config.schema.yaml"))
