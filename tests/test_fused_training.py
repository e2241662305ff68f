"""The trainer's fused loss path: same training as the unfused path, logits never built.

A tiny LlamaForCausalLM trains a few steps with ObjectiveTrainer once with the fused loss and once
on materialised logits (float32, CPU); parameters, losses and the logged CE/entropy must agree.
The runs use plain SGD: the two paths' gradients agree to float32 rounding, and SGD keeps that
difference at lr x rounding, while Adam would divide by the RMS of near-zero gradient entries and
blow the same rounding up to a fraction of a step (the trainer's gradients themselves are compared
directly, whatever the optimizer, in the one-batch test). Under bf16 mixed precision the fused head
must run in bf16, as the model's lm_head does (with and without DeepSpeed).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import LlamaConfig, LlamaForCausalLM

from gemsft.losses import LOSSES, LossKind, fused_linear_ce_loss
from gemsft.objectives import Objective, get_objective
from gemsft.train.fused_choice import MEASURED, NOT_SLOWER, choose_fused_loss
from gemsft.train.trainer import ObjectiveTrainer, training_arguments

REPO = Path(__file__).resolve().parents[1]
IGNORE = -100
VOCAB = 97
CFG = {"epochs": 1, "max_steps": 4, "per_device_batch_size": 4, "learning_rate": 0.1, "warmup_ratio": 0,
       "logging_steps": 1, "save_steps": 1000, "save_total_limit": 1, "max_grad_norm": 1.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(tied: bool, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=tied, pad_token_id=0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a sharper random head, so that GEM's q differs clearly from f
        model.get_output_embeddings().weight.mul_(20.0)
    return model


class Rows(torch.utils.data.Dataset):
    """Prompt/answer rows of varying length: prompt tokens masked, right padding masked."""

    def __init__(self, n=16, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.rows = []
        for _ in range(n):
            length = int(torch.randint(8, 20, (1,), generator=g))
            ids = torch.randint(1, VOCAB, (length,), generator=g)
            labels = ids.clone()
            labels[: int(torch.randint(2, 6, (1,), generator=g))] = IGNORE
            self.rows.append((ids, labels))

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        ids, labels = self.rows[i]
        return {"input_ids": ids, "labels": labels}


def collate(rows):
    t = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), t, dtype=torch.long)
    labels = torch.full((len(rows), t), IGNORE)
    mask = torch.zeros(len(rows), t, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = r["input_ids"], r["labels"], 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train(tmp_path, name, beta, fused, tied, steps=4, neft=None, **cfg):
    model = tiny_model(tied)
    args = training_arguments({**CFG, "max_steps": steps, **cfg}, tmp_path / f"run_{fused}", seed=0,
                              neftune_noise_alpha=neft)
    args.optim = "sgd"
    trainer = ObjectiveTrainer(model=model, args=args, train_dataset=Rows(), data_collator=collate,
                               objective=get_objective(name), beta=beta, fused_loss=fused)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    return model, logs


def wrap_fused_losses(monkeypatch, around):
    """Route every registered fused loss through `around(kind, original, *args, **kwargs)`, for the
    trainers built while `monkeypatch` is active."""
    for kind, entry in list(LOSSES.items()):
        if entry.fused is None:
            continue

        def wrapped(*args, _original=entry.fused, _kind=kind, **kwargs):
            return around(_kind, _original, *args, **kwargs)

        monkeypatch.setitem(LOSSES, kind, dataclasses.replace(entry, fused=wrapped))


@pytest.fixture
def fused_calls(monkeypatch):
    """The loss kind of each fused loss call of the trainers built while it is active."""
    calls = []

    def count(kind, original, *args, **kwargs):
        calls.append(kind)
        return original(*args, **kwargs)

    wrap_fused_losses(monkeypatch, count)
    return calls


class MatmulDtypes(TorchDispatchMode):
    """The dtypes of the two multiplied operands of every aten matrix product run while active (below
    autocast, so what the kernels get)."""

    ADDED_FIRST = {torch.ops.aten.addmm, torch.ops.aten.addmm_, torch.ops.aten.baddbmm}
    PRODUCTS = ADDED_FIRST | {torch.ops.aten.mm, torch.ops.aten.matmul, torch.ops.aten.bmm}

    def __init__(self):
        super().__init__()
        self.operands = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in self.PRODUCTS:
            a, b = args[1:3] if func.overloadpacket in self.ADDED_FIRST else args[:2]
            self.operands.append([str(a.dtype), str(b.dtype)])  # str: the DeepSpeed probe sends them as JSON
        return func(*args, **(kwargs or {}))


def bf16_gem_step(out_dir, fused, deepspeed=None):
    """One GEM step under bf16 mixed precision from float32 weights (the Trainer's master weights):
    the operand dtypes of the matrix products inside each fused loss call, and the step's log."""
    products = []

    def record(kind, original, *args, **kwargs):
        with MatmulDtypes() as mode:
            out = original(*args, **kwargs)
        products.append(mode.operands)
        return out

    with pytest.MonkeyPatch.context() as patch:
        wrap_fused_losses(patch, record)
        _, logs = train(Path(out_dir), "gem", 0.7, fused=fused, tied=True, steps=1, bf16=True, deepspeed=deepspeed)
    return products, logs[0]


@pytest.mark.parametrize("name, beta, tied", [
    ("gem", 0.7, True),
    ("gem_log_sigmoid", 0.5, False),
    ("ce", None, True),
])
def test_fused_training_matches_unfused(tmp_path, fused_calls, name, beta, tied):
    fused_model, fused_logs = train(tmp_path, name, beta, fused=True, tied=tied)
    assert len(fused_calls) == 4  # one fused loss per step: the fused path was taken
    unfused_model, unfused_logs = train(tmp_path, name, beta, fused=False, tied=tied)
    assert len(fused_calls) == 4
    base = tiny_model(tied)
    moved = 0.0
    for (key, a), b, c in zip(fused_model.state_dict().items(), unfused_model.state_dict().values(),
                              base.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=key)
        moved = max(moved, (b - c).abs().max().item())
    assert moved > 1e-3  # the runs did train
    assert len(fused_logs) == len(unfused_logs) == 4
    for f, u in zip(fused_logs, unfused_logs):
        for key in ("loss", "ce", "entropy", "objective_loss", "grad_norm"):
            assert f[key] == pytest.approx(u[key], rel=1e-5, abs=1e-6), key


# Run in a process of its own: DeepSpeed leaves a process group and its accelerator state behind.
DEEPSPEED_PROBE = """import json, sys
import torch
torch.set_num_threads(1)
from test_fused_training import bf16_gem_step
print(json.dumps({f: bf16_gem_step(sys.argv[1], f, sys.argv[2]) for f in (True, False)}))
"""


@pytest.mark.parametrize("deepspeed", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                                reason="deepspeed is not installed")),
])
def test_fused_head_runs_in_the_trainings_bf16_precision(tmp_path, deepspeed):
    """accelerate autocasts only inside model.forward; the fused head runs after it, so it must enter
    the same autocast to multiply in bf16 as the unfused lm_head does (ZeRO-2 casts the weights to bf16
    instead, with no autocast). Both paths then take the same bf16 logits into a float32 loss."""
    if deepspeed:
        from gemsft.train.launch import SINGLE_PROCESS_GROUP_ENV

        env = {**os.environ, **SINGLE_PROCESS_GROUP_ENV, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "workflow")])}
        result = subprocess.run([sys.executable, "-c", DEEPSPEED_PROBE, str(tmp_path),
                                 str(REPO / "config/deepspeed/zero2.json")],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        steps = {key == "true": value for key, value in json.loads(result.stdout.splitlines()[-1]).items()}
    else:
        steps = {fused: bf16_gem_step(tmp_path, fused) for fused in (True, False)}
    (fused_products, fused_log), (unfused_products, unfused_log) = steps[True], steps[False]
    # One chunk at this vocabulary: logits, grad hidden, grad weight. (On a CPU, several chunks
    # accumulate the weight gradient from bf16-rounded operands in float32, by design.)
    assert fused_products == [[["torch.bfloat16", "torch.bfloat16"]] * 3]
    assert unfused_products == []
    # Far tighter than bf16's 4e-3: a float32 fused head is off by ~6e-4 in entropy and grad norm here.
    for key in ("loss", "ce", "entropy", "objective_loss", "grad_norm"):
        assert fused_log[key] == pytest.approx(unfused_log[key], rel=1e-4), key


def test_gem_is_fused_by_default_and_ce_is_not(tmp_path):
    args = training_arguments(CFG, tmp_path, seed=0)
    model = tiny_model(True)
    assert ObjectiveTrainer(model=model, args=args, objective=get_objective("gem")).fused_loss
    assert ObjectiveTrainer(model=model, args=args, objective=get_objective("gem_log_sigmoid")).fused_loss
    assert not ObjectiveTrainer(model=model, args=args, objective=get_objective("ce")).fused_loss
    assert not ObjectiveTrainer(model=model, args=args, objective=get_objective("gem"), fused_loss=False).fused_loss
    assert ObjectiveTrainer(model=model, args=args, objective=get_objective("ce"), fused_loss=True).fused_loss


@pytest.mark.parametrize("setting, device, kind, has_fused, fused, reason", [
    ("auto", "cpu", "gem", True, True, "loss_bench_cpu.txt"),
    (None, "cpu", "gem", True, True, "loss_bench_cpu.txt"),  # absent from a direct call: auto
    ("auto", "cuda", "gem", True, False, "train_throughput_cuda.json"),
    ("auto", "cuda", "ce", True, False, "train_throughput_cuda.json"),
    ("auto", "cpu", "ce", True, False, "not measured on cpu"),
    ("auto", "mps", "gem", True, False, "not measured on mps"),
    (True, "cuda", "gem", True, True, "set in the config"),
    (False, "cpu", "gem", True, False, "set in the config"),
    (True, "cpu", "ce_entropy", False, False, "no fused form"),
])
def test_fused_loss_setting_decides_per_device_and_loss(setting, device, kind, has_fused, fused, reason):
    choice = choose_fused_loss(setting, device, kind, has_fused)
    assert (choice.value, choice.setting) == (fused, "auto" if setting is None else setting)
    assert reason in choice.reason


@pytest.mark.parametrize("setting", ["maybe", "true", 1, 0])
def test_fused_loss_setting_is_true_false_or_auto(setting):
    with pytest.raises(ValueError, match=r"train.fused_loss must be true, false or auto; got"):
        choose_fused_loss(setting, "cpu", "gem", True)


def measured_speeds(source: Path) -> dict[str, list[float]]:
    """Per variant, its speed at each measured size: 1 / time from loss_bench.py's table, tokens/s
    from train_throughput.py's JSON."""
    speeds: dict[str, list[float]] = {}
    if source.suffix == ".json":
        for row in json.loads(source.read_text())["results"]:
            speeds.setdefault(row["variant"], []).append(row["tokens_per_s"])
        return speeds
    for line in source.read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[0].isdigit():  # N V H variant time-ms ...
            speeds.setdefault(fields[3], []).append(1.0 / float(fields[4]))
    return speeds


@pytest.mark.parametrize("key", sorted(MEASURED), ids="-".join)
def test_each_auto_decision_follows_its_result_file(key):
    measured = MEASURED[key]
    speeds = measured_speeds(REPO / measured.source)
    fused, unfused = speeds[measured.fused_variant], speeds[measured.unfused_variant]
    assert len(fused) == len(unfused) > 0
    assert measured.fused_not_slower == all(f / u >= NOT_SLOWER for f, u in zip(fused, unfused))


def test_fused_compute_loss_equals_unfused_on_one_batch(tmp_path):
    model = tiny_model(True)
    batch = collate([Rows()[i] for i in range(4)])
    args = training_arguments(CFG, tmp_path, seed=0)
    losses = {}
    for fused in (True, False):
        trainer = ObjectiveTrainer(model=model, args=args, objective=get_objective("gem"), beta=0.6,
                                   fused_loss=fused)
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        losses[fused] = (loss.detach(), [p.grad.clone() for p in model.parameters()], trainer._tracked)
        model.zero_grad(set_to_none=True)
    torch.testing.assert_close(losses[True][0], losses[False][0], rtol=1e-6, atol=1e-6)
    for a, b in zip(losses[True][1], losses[False][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for key in ("ce", "entropy", "objective_loss"):
        assert losses[True][2][key] == pytest.approx(losses[False][2][key], rel=1e-5)


def test_unfusable_cases_fall_back(tmp_path, fused_calls):
    args = training_arguments(CFG, tmp_path, seed=0)
    batch = collate([Rows()[i] for i in range(2)])
    # ce_entropy has no fused form; it runs on logits even with fused_loss=True.
    model = tiny_model(True)
    trainer = ObjectiveTrainer(model=model, args=args, objective=get_objective("ce_entropy"), fused_loss=True)
    assert torch.isfinite(trainer.compute_loss(model, dict(batch)))
    # A head that is not a plain nn.Linear (here: a subclass with a logit scale) is not fused.

    class ScaledHead(torch.nn.Linear):
        def forward(self, x):
            return 2.0 * super().forward(x)

    model = tiny_model(False)
    head = ScaledHead(32, VOCAB, bias=False)
    head.weight = model.lm_head.weight
    model.lm_head = head
    trainer = ObjectiveTrainer(model=model, args=args, objective=get_objective("gem"))
    assert not trainer.fused_loss and "head cannot be fused" in trainer.fused_choice.reason
    loss = trainer.compute_loss(model, dict(batch))
    from gemsft.losses import gem_loss, shift_for_causal_lm

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(loss, gem_loss(*shift_for_causal_lm(logits, batch["labels"])))
    # Evaluation wants the outputs (logits): unfused.
    trainer = ObjectiveTrainer(model=tiny_model(True), args=args, objective=get_objective("gem"))
    loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    assert outputs.logits.shape[-1] == VOCAB
    assert fused_calls == []


def test_fused_training_with_neftune_matches_unfused(tmp_path, fused_calls):
    """NEFTune's noise is a hook on the input embeddings, which the fused path still runs through."""
    fused_model, _ = train(tmp_path, "gem", 0.7, fused=True, tied=True, steps=2, neft=5.0)
    unfused_model, _ = train(tmp_path, "gem", 0.7, fused=False, tied=True, steps=2, neft=5.0)
    assert len(fused_calls) == 2
    plain_model, _ = train(tmp_path, "gem", 0.7, fused=False, tied=True, steps=2)
    for a, b in zip(fused_model.parameters(), unfused_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(a, c) for a, c in zip(unfused_model.parameters(), plain_model.parameters()))


def test_a_new_objective_is_one_loss_function_and_one_registry_entry(tmp_path, monkeypatch):
    """A toy kind (CE scaled by the run's beta) with an optional fused form trains through the
    trainer's one loss lookup, fused and unfused alike, once registered."""
    fused_betas = []

    def scaled_ce(logits, labels, beta, ignore_index=-100):
        return beta * F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=ignore_index)

    def fused_scaled_ce(hidden, weight, labels, beta, return_stats=False):
        fused_betas.append(beta)
        out = fused_linear_ce_loss(hidden, weight, labels, return_stats=return_stats)
        return (beta * out[0], out[1]) if return_stats else beta * out

    monkeypatch.setitem(LOSSES, "scaled_ce", LossKind(logits=scaled_ce, fused=fused_scaled_ce, uses_beta=True))
    objective = Objective(name="toy", loss="scaled_ce", uses_beta=True)
    batch = collate([Rows()[i] for i in range(4)])
    model = tiny_model(True)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    mask = batch["labels"][:, 1:] != IGNORE
    log_f = torch.log_softmax(logits[:, :-1][mask].double(), dim=-1)
    expected = 0.5 * -log_f.gather(1, batch["labels"][:, 1:][mask].unsqueeze(1)).mean()
    args = training_arguments(CFG, tmp_path, seed=0)
    for fused in (True, False):
        trainer = ObjectiveTrainer(model=model, args=args, objective=objective, beta=0.5, fused_loss=fused)
        loss = trainer.compute_loss(model, dict(batch))
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5), fused
    assert fused_betas == [0.5]  # the fused path was taken once, with the run's beta
    with pytest.raises(ValueError, match="'toy'"):
        ObjectiveTrainer(model=model, args=args, objective=dataclasses.replace(objective, uses_beta=False), beta=0.5)
    # and one training step
    args = training_arguments({**CFG, "max_steps": 1}, tmp_path / "run", seed=0)
    args.optim = "sgd"
    before = [p.detach().clone() for p in model.parameters()]
    trainer = ObjectiveTrainer(model=model, args=args, train_dataset=Rows(), data_collator=collate,
                               objective=objective, beta=0.5)
    trainer.train()
    (log,) = [e for e in trainer.state.log_history if "loss" in e]
    assert log["objective_loss"] == pytest.approx(0.5 * log["ce"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
