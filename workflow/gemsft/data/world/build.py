"""Generate the embedded world: pretraining corpus, SFT data, evaluation sets, preference pairs.

Deterministic in `world.seed`: the same config always gives byte-identical files.
"""

from __future__ import annotations

import random
from pathlib import Path

from gemsft import files
from gemsft.data.world import arithmetic, chat, code, knowledge
from gemsft.data.world.common import QA_FRAME, QA_PROBE, Task

FAMILIES = {"chat": chat, "code": code, "math": arithmetic}

# File names inside the world directory; every later stage refers to them through this table.
FILES = {
    "pretrain": "pretrain.jsonl",
    "sft_train": "sft_train.jsonl",
    "sft_test": "sft_test.jsonl",
    "eval_chat": "eval_chat.jsonl",
    "eval_code": "eval_code.jsonl",
    "eval_math": "eval_math.jsonl",
    "eval_knowledge": "eval_knowledge.jsonl",
    "probes": "probes.jsonl",
    "preferences": "preferences.jsonl",
    "summary": "world.json",
}


def user_content(task: Task) -> str:
    return arithmetic.PAPER_PROMPT.format(question=task.request) if task.family == "math" else task.request


def pretrain_request(task: Task, rng: random.Random, cfg: dict) -> str:
    """A pretraining document's request: the bare one, or for a `math.pretrain_paper_prompt_fraction`
    share of the math questions the question inside the paper's GSM8K instruction, as web text holds
    benchmark-style prompts. The model then has read that frame before SFT asks for the
    operands in it."""
    if task.family == "math" and rng.random() < cfg["math"]["pretrain_paper_prompt_fraction"]:
        return user_content(task)
    return task.request


def _chat_example(task: Task, response: str) -> dict:
    return {"id": task.id, "family": task.family,
            "messages": [{"role": "user", "content": user_content(task)},
                         {"role": "assistant", "content": response}]}


def build_world(cfg: dict) -> dict[str, list[dict]]:
    """All record sets of the world, keyed like FILES (without the summary)."""
    rng = random.Random(cfg["seed"])
    tasks = (chat.build_tasks(rng, cfg["test_fraction"], cfg["zipf_exponent"], quality_seed=cfg["seed"])
             + code.build_tasks(rng, cfg["zipf_exponent"], **cfg["code"])
             + arithmetic.build_tasks(rng, **{k: cfg["math"][k] for k in
                                              ("n_eval", "n_sft", "n_pretrain", "pretrain_sft_voice", "max_operand")}))
    facts = knowledge.build_facts(rng, cfg["knowledge"]["n_countries"])
    repeats = {"chat": cfg["pretrain_samples_per_chat_prompt"], "code": cfg["pretrain_samples_per_code_task"],
               "math": 1}

    pretrain, sft_train, sft_test, preferences = [], [], [], []
    chat_pair_rng = random.Random(f"gemsft-world/{cfg['seed']}/chat-preferences")
    for task in tasks:
        family = FAMILIES[task.family]
        if task.split in ("train", "pretrain"):
            for _ in range(repeats[task.family]):
                response = family.pretrain_response(task, task.sample_key(rng), rng)
                pretrain.append(QA_FRAME.format(request=pretrain_request(task, rng, cfg), response=response))
        if task.split in ("train", "sft"):
            # Narrow SFT data: one response per prompt, in one voice, from a sharpened p(y|x).
            chosen_key = task.sample_key(rng, cfg["sft_answer_temperature"])
            sft_train.append(_chat_example(task, family.sft_response(task, chosen_key)))
            for index in range(cfg["preference_pairs_per_prompt"]):
                # Both drawn for every pair, even a chat quality pair with no use for the unacceptable
                # one: the main stream, hence every file but the chat pairs, is then the same whatever
                # the oracle's labelling does.
                key, unacceptable = task.sample_key(rng), family.unacceptable_response(task, rng)
                pair = (chat.preference_pair(task, index, key, unacceptable, chat_pair_rng) if task.family == "chat"
                        else {"chosen": family.sft_response(task, key), "rejected": unacceptable})
                preferences.append({"id": task.id, "family": task.family, "prompt": user_content(task), **pair})
        if task.split == "test":
            sft_test.append(_chat_example(task, family.sft_response(task, task.mode_key())))
    for fact in facts:
        pretrain.extend(knowledge.documents(fact, rng, cfg["knowledge"]["repeats"]))
    rng.shuffle(pretrain)

    test = [t for t in tasks if t.split == "test"]
    rng.shuffle(test)  # so that a config's first-N prompts of a family mix every kind
    return {
        "pretrain": [{"text": text} for text in pretrain],
        "sft_train": sft_train,
        "sft_test": sft_test,
        "eval_chat": [{"id": t.id, "kind": t.kind, "slot": t.slot, "prompt": t.request,
                       "reference": chat.sft_response(t, t.mode_key()), "acceptable": sorted(t.p), "p": t.p,
                       "quality": t.extra["quality"]}
                      for t in test if t.family == "chat"],
        "eval_code": [{"id": t.id, "kind": t.kind, "prompt": t.request, "entry_point": t.extra["entry_point"],
                       "tests": t.extra["tests"], "solutions": t.extra["solutions"], "p": t.p,
                       "role": t.extra["role"], "bug_rate": round(t.extra["bug_rate"], 4)}
                      for t in test if t.family == "code"],
        "eval_math": [{"id": t.id, "prompt": user_content(t), "question": t.request,
                       "answer": t.extra["answer"], "reference": arithmetic.sft_response(t)}
                      for t in test if t.family == "math"],
        "eval_knowledge": [{"id": f.id, "relation": f.relation, "question": f.question,
                            "choices": list(f.choices), "gold": f.gold} for f in facts],
        "probes": [{"id": t.id, "family": t.family, "kind": t.kind, "slot": t.slot,
                    "text": QA_PROBE.format(request=t.request), "acceptable": sorted(t.p),
                    **({"answer": t.extra["answer"]} if t.family == "math" else {})}
                   for t in test if t.family in ("chat", "math")],
        "preferences": preferences,
    }


def judge(family: str, record: dict, text: str) -> str | None:
    """The acceptable answer key a response gives to an evaluation record, or None."""
    return FAMILIES[family].judge(record, text)


def write_world(cfg: dict, out_dir: str | Path) -> dict:
    """Build the world and write every file atomically (the directory appears only when complete)."""
    records = build_world(cfg)
    summary = {"config": cfg, "counts": {name: len(rows) for name, rows in records.items()}}
    with files.atomic_path(out_dir, directory=True) as tmp:
        for name, rows in records.items():
            files.write_jsonl(tmp / FILES[name], rows)
        files.write_json(tmp / FILES["summary"], summary)
    return summary


def answer_prefix(record: dict) -> str:
    """The reference response of a chat record up to its answer, without the space before it (the
    byte-level tokenizer puts a word's leading space into the word's token): the context after which
    a model's next token is its answer (Figure 11)."""
    reference = record["reference"]
    found = [i for i in (reference.find(answer) for answer in record["acceptable"]) if i >= 0]
    if not found:
        raise ValueError(f"chat record {record['id']!r}: its reference names none of its acceptable answers")
    return reference[:min(found)].rstrip()
