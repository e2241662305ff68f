"""Tiny stand-ins for the paper's hub models, saved in a Hugging Face hub cache under the paper's own
hub ids, so that config/paper-rehearsal.yaml resolves `meta-llama/Llama-3.1-8B`,
`meta-llama/Llama-3.1-8B-Instruct` and `sfairXC/FsfairX-LLaMA3-RM-v0.1` offline
(HF_HOME=<dir>, HF_HUB_OFFLINE=1) exactly as config/paper.yaml does on a cluster.

* meta-llama/Llama-3.1-8B: a tiny LlamaForCausalLM (untied head, bf16 weights, 131072 positions,
  a generation config whose only EOS is <|end_of_text|>, like the real one) with the
  Llama-3.1-style tokenizer of `llama31_tokenizer` but no chat template, so SFT formats its data
  only through `model.chat_template_from`. The stand-in has learned to end turns: in the chat
  template it answers any user turn with one of a few short replies and <|eot_id|>; in the
  pretraining frame "Q: ...\\nA:" (the base model's few-shot prompts) with a short reply and the next
  "\\n\\nQ:" turn, as a base model does after worked examples. A random tiny model would never stop.
* meta-llama/Llama-3.1-8B-Instruct: a tokenizer-only repo, the same tokenizer with Llama-3.1-
  Instruct's chat template (eos <|eot_id|>, as the Instruct tokenizer's).
* sfairXC/FsfairX-LLaMA3-RM-v0.1: a tiny LlamaForSequenceClassification with one label (random
  reward head), bf16 weights, with the templated tokenizer, as FsfairX ships.

The files are laid out as `hf download` leaves them (blobs, snapshots/<revision>, refs/main).
`build_paper_hub_cache(hf_home, stand_in_texts(mirror, sft_limit))` builds all three (about a minute
on 2 cores); run as a script to build the rehearsal's by hand:

    python tests/hub_cache.py HF_HOME MIRROR        # MIRROR: the data mirror, e.g. ../shared/data
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from llama31_tokenizer import CHAT_TEMPLATE, DEFAULT_CORPUS, END_OF_TEXT, EOT, llama31_tokenizer

BASE_ID = "meta-llama/Llama-3.1-8B"
INSTRUCT_ID = "meta-llama/Llama-3.1-8B-Instruct"
REWARD_ID = "sfairXC/FsfairX-LLaMA3-RM-v0.1"
# One fixed (made-up) revision per repo: refs/main points at it.
REVISIONS = {BASE_ID: "d04e592bb4f6aa9cfee91e2e20afa771667e1d4b",
             INSTRUCT_ID: "0e9e39f249a16976918f6564b8830bc894c89659",
             REWARD_ID: "94fad49f1b3227aa8b566f415a335adb68ec544c"}

# What the stand-in answers, whatever it is asked: short, varied (so samples differ), no special text.
REPLIES = ("Sure.", "Hello!", "I think so.", "The answer is 7.", "Cherry.", "Yes, here it is.")
QA_TURN, QA_PROBE, SHOT_SEPARATOR = "Q: {q}\nA: {a}", "Q: {q}\nA:", "\n\n"

# head_dim 64 for vLLM's CPU attention; the positions of Llama-3.1 (131072) so that long k-shot prompts
# fit, as they do on the real model.
BASE_CFG = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
            "max_position_embeddings": 131072, "tie_word_embeddings": False}
REWARD_CFG = {**BASE_CFG, "num_hidden_layers": 1, "max_position_embeddings": 8192}  # Llama-3-8B's context


def save_in_hub_cache(src: Path, hub: Path, repo_id: str, revision: str) -> Path:
    """Copy a saved model or tokenizer directory into huggingface_hub's cache layout under `hub`:
    models--org--name/blobs/<sha256>, snapshots/<revision>/<file> -> ../../blobs/<sha256>, refs/main."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in sorted(src.iterdir()):
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / digest).write_bytes(data)
        (snapshot / file.name).symlink_to(Path("../../blobs") / digest)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


# --------------------------------------------------------------------------- the stand-in's lessons

def _chunk(rng: random.Random, texts: Sequence[str], max_chars: int) -> str:
    """A random stretch (at least one word) of a random text, at most `max_chars` long."""
    text = rng.choice(texts)
    start = rng.randrange(len(text))
    chunk = text[start:start + rng.randint(1, max_chars)].strip()
    return chunk or "Hi"


def _supervised(tokenizer, prefix: str, target: str) -> tuple[list[int], list[int]]:
    """Token ids of prefix + target, labels -100 on the prefix's tokens."""
    text = prefix + target
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    labels = [i if start >= len(prefix) else -100 for i, (start, _) in zip(ids, encoded["offset_mapping"])]
    return ids, labels


def chat_lesson(tokenizer, rng: random.Random, texts: Sequence[str], max_chars: int):
    """One user turn of corpus text, answered with a short reply that ends the turn with <|eot_id|>."""
    from gemsft.chat_format import prompt_text

    prompt = prompt_text(tokenizer, _chunk(rng, texts, max_chars))
    return _supervised(tokenizer, prompt, rng.choice(REPLIES) + EOT)


def qa_lesson(tokenizer, rng: random.Random, texts: Sequence[str], max_chars: int):
    """0 to 5 worked examples of corpus text in the pretraining frame (as gemsft.sample.base_prompt
    frames the base model's prompts), then a question answered with a short reply and the next turn."""
    shots = [QA_TURN.format(q=_chunk(rng, texts, max_chars // 6), a=_chunk(rng, texts, max_chars // 3))
             for _ in range(rng.randint(0, 5))]
    prompt = tokenizer.bos_token + SHOT_SEPARATOR.join([*shots, QA_PROBE.format(q=_chunk(rng, texts, max_chars))])
    return _supervised(tokenizer, prompt, " " + rng.choice(REPLIES) + SHOT_SEPARATOR + "Q:")


def teach_to_end_turns(model, tokenizer, texts: Sequence[str], steps: int, batch_size: int = 16,
                       max_chars: int = 600, seed: int = 0) -> list[float]:
    """Train `model` on fresh lessons, chat and Q/A on alternate steps (so a batch pads to lessons of
    its own kind); returns every step's loss on the supervised tokens."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 20))
    pad = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    model.train()
    losses = []
    for step in range(steps):
        lesson = chat_lesson if step % 2 else qa_lesson
        batch = [lesson(tokenizer, rng, texts, max_chars) for _ in range(batch_size)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


# --------------------------------------------------------------------------- the cache

def stand_in_texts(mirror: str | Path, sft_limit: int) -> list[str]:
    """The stand-in's corpus from the data mirror, apart from what the rehearsal reads: the UltraFeedback
    train rows after its first `sft_limit` (prompts and answers) and 300 GSM8K train questions (it
    evaluates on GSM8K test)."""
    from gemsft import files

    rows = files.read_jsonl(Path(mirror) / "ultrafeedback/train_clean.jsonl")[sft_limit:]
    texts = [r["prompt"] for r in rows] + [r["chosen"] for r in rows]
    return texts + [r["question"] for r in files.read_jsonl(Path(mirror) / "gsm8k/train.jsonl", 300)]


def build_paper_hub_cache(hf_home: str | Path, texts: Sequence[str], *, steps: int = 160, vocab_size: int = 2048,
                          seed: int = 0, work_dir: str | Path | None = None) -> dict:
    """Build the three stand-ins and save them under `hf_home`/hub. `texts`: the stand-in's corpus
    (its tokenizer's and its user turns' text; keep it apart from what the rehearsal evaluates on).
    Torch runs on one thread meanwhile (small matrices on shared cores: faster, and the same stand-in
    every time). Returns {"snapshots": {repo id: path}, "losses": the stand-in's training losses,
    "seconds"}."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(Path(hf_home), texts, steps, vocab_size, seed, work_dir)
    finally:
        torch.set_num_threads(threads)


def _build(hf_home: Path, texts: Sequence[str], steps: int, vocab_size: int, seed: int, work_dir) -> dict:
    import tempfile

    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    start = time.perf_counter()
    hub = hf_home / "hub"
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("build_paper_hub_cache: no text to build the stand-ins from")
    tokenizer = llama31_tokenizer([*DEFAULT_CORPUS, *REPLIES, *texts], vocab_size=vocab_size)
    bos, eos = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TEXT)

    def llama_config(cfg: dict, **extra) -> LlamaConfig:
        return LlamaConfig(vocab_size=len(tokenizer), num_key_value_heads=cfg["num_attention_heads"],
                           bos_token_id=bos, eos_token_id=eos, rope_theta=500000.0, **cfg, **extra)

    torch.manual_seed(seed)
    base = LlamaForCausalLM(llama_config(BASE_CFG))
    losses = teach_to_end_turns(base, tokenizer, texts, steps, seed=seed)
    # Llama-3.1-8B's generation config stops on <|end_of_text|> only; sampling must add <|eot_id|>.
    base.generation_config = GenerationConfig(bos_token_id=bos, eos_token_id=eos)
    torch.manual_seed(seed + 1)
    reward = LlamaForSequenceClassification(llama_config(REWARD_CFG, num_labels=1, pad_token_id=eos))

    snapshots = {}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        tmp = Path(tmp)
        base.to(torch.bfloat16).save_pretrained(tmp / "base")  # the hub checkpoints are bf16
        tokenizer.chat_template = None
        tokenizer.save_pretrained(tmp / "base")
        tokenizer.chat_template = CHAT_TEMPLATE
        reward.to(torch.bfloat16).save_pretrained(tmp / "reward")
        tokenizer.save_pretrained(tmp / "reward")
        tokenizer.eos_token = EOT  # Llama-3.1-8B-Instruct's tokenizer ends on <|eot_id|>
        tokenizer.save_pretrained(tmp / "instruct")
        (tmp / "instruct" / "generation_config.json").write_text(
            json.dumps({"bos_token_id": bos, "eos_token_id": [eos, tokenizer.convert_tokens_to_ids(EOT)]}))
        for repo_id, name in ((BASE_ID, "base"), (INSTRUCT_ID, "instruct"), (REWARD_ID, "reward")):
            snapshots[repo_id] = save_in_hub_cache(tmp / name, hub, repo_id, REVISIONS[repo_id])
    return {"snapshots": snapshots, "losses": losses, "seconds": time.perf_counter() - start}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/hub_cache.py HF_HOME MIRROR")
    import yaml

    rehearsal = Path(__file__).resolve().parents[1] / "config/paper-rehearsal.yaml"
    limit = yaml.safe_load(rehearsal.read_text())["data"]["real"]["sft"]["limit"]
    built = build_paper_hub_cache(sys.argv[1], stand_in_texts(sys.argv[2], limit))
    print(json.dumps({k: str(v) for k, v in built["snapshots"].items()}, indent=1))
    print(f"final loss {built['losses'][-1]:.4f}, {built['seconds']:.0f} s")
