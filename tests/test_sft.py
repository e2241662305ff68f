"""SFT data path and trainer: chat-template masking, length policies, bad input, the objective
plugged into the HF Trainer, registry settings reaching TrainingArguments, resuming."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from gemsft import files
from gemsft.losses import ce_entropy_loss, ce_loss, gem_loss, shift_for_causal_lm
from gemsft.objectives import get_objective
from gemsft.chat_format import IGNORE_INDEX, load_tokenizer, tokenize_example
from gemsft.train.sft import build_dataset, configured_objective, finetune
from gemsft.pretrain.tokenizer import EOS
from gemsft.train.trainer import ObjectiveTrainer, training_arguments

MESSAGES = [{"role": "user", "content": "Name a red fruit."},
            {"role": "assistant", "content": "Of course! Here is one: cherry."}]
TRAIN_CFG = {"epochs": 2, "per_device_batch_size": 4, "learning_rate": 1e-3, "max_length": 128,
             "length_policy": "drop", "logging_steps": 1, "save_steps": 2, "save_total_limit": 5}

# The tokenizer and base_dir fixtures (the tiny base model) are tests/conftest.py's.


def sft_rows(n=12):
    return [{"id": f"r{i}", "messages": MESSAGES} for i in range(n)]


def test_labels_cover_exactly_the_assistant_turn(tokenizer):
    example = tokenize_example(tokenizer, MESSAGES)
    supervised = [i for i, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == MESSAGES[1]["content"] + EOS
    prompt = tokenizer.apply_chat_template(MESSAGES[:1], add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
    assert example["input_ids"][: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in example["labels"][: len(prompt)])


def test_length_policy_drop_and_truncate(tokenizer):
    n = len(tokenize_example(tokenizer, MESSAGES)["input_ids"])
    assert build_dataset(tokenizer, sft_rows(2), n, "drop", "x") and len(build_dataset(tokenizer, sft_rows(2), n, "drop", "x")) == 2
    with pytest.raises(ValueError, match="no example fits train.max_length"):
        build_dataset(tokenizer, sft_rows(2), n - 1, "drop", "x")
    truncated = build_dataset(tokenizer, sft_rows(2), n - 1, "truncate", "x")
    assert all(len(ex["input_ids"]) == n - 1 == len(ex["labels"]) for ex in truncated)


@pytest.mark.parametrize("rows, message", [
    ([], "empty"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "row 0 has no assistant message"),
    ([{"id": 1}], "row 0 has no assistant message"),
])
def test_bad_sft_rows_name_the_row(tokenizer, rows, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(tokenizer, rows, 128, "drop", "data.jsonl")


def test_tokenizer_without_chat_template_is_an_error(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="no chat_template"):
        load_tokenizer(tmp_path)


def test_registry_settings_reach_the_trainer_and_overrides_apply(tmp_path):
    wd = configured_objective("ce_wd", {})
    neft = configured_objective("neft", {})
    args = training_arguments(TRAIN_CFG, tmp_path, seed=1, weight_decay=wd.weight_decay,
                              neftune_noise_alpha=neft.neftune_noise_alpha)
    assert (args.weight_decay, args.neftune_noise_alpha) == (0.1, 5.0)
    assert (args.adam_beta2, args.max_grad_norm, args.lr_scheduler_type.value) == (0.95, 1.0, "cosine")
    overridden = configured_objective("ce_entropy", {"objective_overrides": {"ce_entropy": {"entropy_gamma": 0.01}}})
    assert overridden == dataclasses.replace(get_objective("ce_entropy"), entropy_gamma=0.01)


# The loss each objective trains with, written out with the registry's settings (paper Section 6 / Appendix E).
OBJECTIVE_LOSSES = {
    "gem": lambda z, y, beta: gem_loss(z, y, beta=beta, h="linear"),
    "gem_log_sigmoid": lambda z, y, beta: gem_loss(z, y, beta=beta, h="log_sigmoid"),
    "ce_entropy": lambda z, y, beta: ce_entropy_loss(z, y, gamma=0.1),
    "ce": lambda z, y, beta: ce_loss(z, y),
}


@pytest.mark.parametrize("name, beta", [("gem", 0.7), ("gem_log_sigmoid", 0.5), ("ce_entropy", None), ("ce", None)])
def test_trainer_loss_is_the_objective_on_shifted_logits(tokenizer, base_dir, tmp_path, name, beta):
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    data = build_dataset(tokenizer, sft_rows(4), 128, "drop", "x")
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collator(data)
    trainer = ObjectiveTrainer(model=model, args=training_arguments(TRAIN_CFG, tmp_path, seed=0),
                               objective=get_objective(name), beta=beta)
    loss = trainer.compute_loss(model, dict(batch))
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = OBJECTIVE_LOSSES[name](*shift_for_causal_lm(logits, batch["labels"]), beta)
    torch.testing.assert_close(loss, expected)


def test_finetune_passes_beta_to_the_one_check(base_dir, tmp_path):
    """A beta for an objective without one is an error naming it, before any training step."""
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows())
    with pytest.raises(ValueError, match="objective 'ce_wd' does not use beta"):
        finetune(base_dir, data, tmp_path / "out", tmp_path / "ckpt", tmp_path / "m.json",
                 objective_name="ce_wd", beta=0.7, seed=3, cfg=TRAIN_CFG)
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "m.json").exists()


def test_finetune_writes_a_loadable_model_and_metrics(base_dir, tmp_path):
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows())
    metrics = finetune(base_dir, data, tmp_path / "out", tmp_path / "ckpt", tmp_path / "m.json",
                       objective_name="gem", beta=0.7, seed=3, cfg=TRAIN_CFG)
    saved = files.read_json(tmp_path / "m.json")
    assert saved["objective"] == "gem" and saved["beta"] == 0.7 and saved["finite"]
    # train.fused_loss absent: auto, which fuses GEM on a CPU after the CPU loss benchmark
    assert saved["fused_loss"]["value"] is True and saved["fused_loss"]["setting"] == "auto"
    assert "benchmarks/results/loss_bench_cpu.txt" in saved["fused_loss"]["reason"]
    assert {"ce", "entropy", "grad_norm", "loss"} <= set(saved["final"])
    assert metrics["global_steps"] == 6  # 12 rows / batch 4 * 2 epochs
    from transformers import AutoModelForCausalLM

    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), base.parameters()))
    assert load_tokenizer(tmp_path / "out").chat_template


def test_resume_from_checkpoint_matches_an_uninterrupted_run(base_dir, tmp_path, monkeypatch):
    """A run killed right after its checkpoint at step 2 leaves no output; the rerun resumes from the
    checkpoint and ends with the same weights as an uninterrupted run."""
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows())
    compute_loss, trained = ObjectiveTrainer.compute_loss, []

    def counted(self, model, *args, **kwargs):  # training micro-batches only, not evaluation
        if model.training:
            trained.append(1)
        return compute_loss(self, model, *args, **kwargs)

    monkeypatch.setattr(ObjectiveTrainer, "compute_loss", counted)
    finetune(base_dir, data, tmp_path / "full", tmp_path / "ckpt_full", tmp_path / "a.json", "ce", None, 5,
             TRAIN_CFG)
    full_batches = len(trained)

    save = ObjectiveTrainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise RuntimeError("killed after the first checkpoint")

    monkeypatch.setattr(ObjectiveTrainer, "_save_checkpoint", save_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        finetune(base_dir, data, tmp_path / "resumed", tmp_path / "ckpt", tmp_path / "b.json", "ce", None, 5,
                 TRAIN_CFG)
    monkeypatch.undo()
    assert not (tmp_path / "resumed").exists() and not (tmp_path / "b.json").exists()
    assert (tmp_path / "ckpt" / "checkpoint-2").is_dir()

    monkeypatch.setattr(ObjectiveTrainer, "compute_loss", counted)
    trained.clear()
    metrics = finetune(base_dir, data, tmp_path / "resumed", tmp_path / "ckpt", tmp_path / "b.json", "ce", None,
                       5, TRAIN_CFG)
    assert metrics["resumed_from"] == "checkpoint-2"
    # It trained only the steps after the checkpoint (a restart from scratch would end with the same
    # weights, training being deterministic, so the weights alone cannot tell).
    max_steps = files.read_json(tmp_path / "ckpt" / "checkpoint-2" / "trainer_state.json")["max_steps"]
    assert max_steps > 2 and len(trained) == full_batches * (max_steps - 2) // max_steps, (len(trained), full_batches)
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    resumed = AutoModelForCausalLM.from_pretrained(tmp_path / "resumed")
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_lora_run_saves_a_merged_plain_model(base_dir, tmp_path):
    """With train.lora the adapters train alone and are merged at the end, so later stages load a
    plain model with the base model's parameter names."""
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows())
    cfg = {**TRAIN_CFG, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}}
    finetune(base_dir, data, tmp_path / "out", tmp_path / "ckpt", tmp_path / "m.json", "gem", 0.7, 1, cfg)
    from transformers import AutoModelForCausalLM

    tuned = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "out").named_parameters())
    base = dict(AutoModelForCausalLM.from_pretrained(base_dir).named_parameters())
    assert tuned.keys() == base.keys()
    changed = {name for name in base if not torch.equal(base[name], tuned[name])}
    assert changed and all("proj" in name for name in changed)  # only adapted linear layers moved
    assert not any("embed" in name or "norm" in name for name in changed)


def test_deepspeed_zero2_config_is_the_papers(tmp_path):
    config = json.loads((Path(__file__).resolve().parents[1] / "config/deepspeed/zero2.json").read_text())
    assert config["zero_optimization"]["stage"] == 2
    assert "offload_optimizer" not in config["zero_optimization"]  # the paper: ZeRO-2 without offload
    # Batch, clipping and precision come from TrainingArguments so there is one source of truth.
    assert config["train_micro_batch_size_per_gpu"] == config["gradient_clipping"] == "auto"


# Llama-3.1-Instruct's template shape (header ids, <|eot_id|>), without {% generation %} markers.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def test_templates_without_generation_markers_mask_by_prefixes(tokenizer):
    """open-instruct's masking: every assistant turn (and its end-of-turn token), nothing else."""
    import copy

    llama = copy.deepcopy(tokenizer)
    llama.chat_template = LLAMA3_TEMPLATE
    conversation = [{"role": "system", "content": "Be brief."}, *MESSAGES,
                    {"role": "user", "content": "Greet Anna."}, {"role": "assistant", "content": "Hello, Anna!"}]
    example = tokenize_example(llama, conversation)
    ids, labels = example["input_ids"], example["labels"]
    spans, start = [], None
    for position, label in enumerate(labels + [IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = position
        elif label == IGNORE_INDEX and start is not None:
            spans.append(llama.decode(ids[start:position]))
            start = None
    assert spans == ["Of course! Here is one: cherry.<|eot_id|>", "Hello, Anna!<|eot_id|>"]
    assert labels == [i if label != IGNORE_INDEX else IGNORE_INDEX for i, label in zip(ids, labels)]
    # The same conversation through the world template (with markers) supervises the same texts.
    world = tokenize_example(tokenizer, MESSAGES)
    assert tokenizer.decode([i for i, l in zip(world["input_ids"], world["labels"]) if l != IGNORE_INDEX]) \
        == MESSAGES[1]["content"] + EOS


def test_chat_template_from_another_tokenizer(tokenizer, base_dir, tmp_path):
    """model.chat_template_from: a base model without a template trains with another's (the paper:
    Llama-3.1-8B with Llama-3.1-8B-Instruct's), and the fine-tuned model keeps it."""
    import copy
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(base_dir, bare)
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    no_template.save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    source = tmp_path / "instruct"
    instruct = copy.deepcopy(tokenizer)
    # A short template without {% generation %} markers: the tiny model has 128 positions.
    template = ("{% for m in messages %}{{ m['role'][0] + ':' + m['content'] + eos_token }}{% endfor %}"
                "{% if add_generation_prompt %}a:{% endif %}")
    instruct.chat_template = template
    instruct.save_pretrained(source)

    with pytest.raises(ValueError, match="no chat_template.*model.chat_template_from"):
        load_tokenizer(bare)
    assert load_tokenizer(bare, chat_template_from=source).chat_template == template
    cfg = {**TRAIN_CFG, "epochs": 1, "chat_template_from": str(source)}
    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows(4))
    finetune(bare, data, tmp_path / "out", tmp_path / "ckpt", tmp_path / "m.json", "ce", None, 0, cfg)
    assert load_tokenizer(tmp_path / "out").chat_template == template


def test_a_partially_written_checkpoint_is_skipped_and_a_corrupted_one_is_named(base_dir, tmp_path):
    """A run killed while the Trainer writes checkpoint-N leaves it without trainer_state.json (written
    last): the rerun resumes from the previous complete checkpoint and ends where an uninterrupted run
    ends. A complete checkpoint whose weights are damaged stops the rerun with one line naming it."""
    from gemsft.train.trainer import last_complete_checkpoint

    data = tmp_path / "sft.jsonl"
    files.write_jsonl(data, sft_rows())
    cfg = {**TRAIN_CFG, "save_steps": 2, "save_total_limit": 10}
    finetune(base_dir, data, tmp_path / "full", tmp_path / "ckpt_full", tmp_path / "a.json", "gem", 0.7, 5, cfg)
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tmp_path / "ckpt_full" / "checkpoint-2", ckpt / "checkpoint-2")
    partial = ckpt / "checkpoint-4"
    shutil.copytree(tmp_path / "ckpt_full" / "checkpoint-4", partial)
    (partial / "trainer_state.json").unlink()
    (partial / "optimizer.pt").write_bytes(b"")  # cut off while saving
    assert last_complete_checkpoint(ckpt) == ckpt / "checkpoint-2"
    assert last_complete_checkpoint(tmp_path / "missing") is None

    metrics = finetune(base_dir, data, tmp_path / "resumed", ckpt, tmp_path / "b.json", "gem", 0.7, 5, cfg)
    assert metrics["resumed_from"] == "checkpoint-2"
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(tmp_path / "full")
    resumed = AutoModelForCausalLM.from_pretrained(tmp_path / "resumed")
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    corrupted = tmp_path / "ckpt_bad"
    shutil.copytree(tmp_path / "ckpt_full" / "checkpoint-2", corrupted / "checkpoint-2")
    weights = corrupted / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=r"training resumed from .*checkpoint-2 failed .*delete it") as err:
        finetune(base_dir, data, tmp_path / "bad", corrupted, tmp_path / "c.json", "gem", 0.7, 5, cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "c.json").exists()
