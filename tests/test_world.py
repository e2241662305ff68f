"""Tests for gemsft.data.world, the seeded synthetic world (chat, code, math, knowledge).

Wherever possible the expected values come from an independent oracle rather than from the code
under test: acceptable chat answers are recomputed from the lexicon, math answers are recomputed
from the question text, code solutions are executed, knowledge facts are read back from the
pretraining corpus. Every count is derived from the config, never hard-coded.

The default world builds in well under a second, so the module uses it directly; a second, tiny
config checks that sizes follow the config rather than happening to match the defaults.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import gemsft.data.world.build as build_mod
from gemsft import files
from gemsft.data.world import FILES, answer_prefix, build_world, judge, write_world
from gemsft.data.world import arithmetic, chat, code, knowledge, lexicon
from gemsft.data.world.common import QA_FRAME

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "config.yaml"

# A small world with every size different from the default, to show sizes follow the config.
TINY_OVERRIDES = {
    "pretrain_samples_per_chat_prompt": 3,
    "pretrain_samples_per_code_task": 2,
    "preference_pairs_per_prompt": 2,
    "math": {"n_eval": 5, "n_sft": 7, "n_pretrain": 11, "pretrain_paper_prompt_fraction": 0.3,
             "pretrain_sft_voice": False, "max_operand": 19},
    "knowledge": {"n_countries": 4, "repeats": 3},
}


# ----------------------------------------------------------------------------- fixtures / helpers


@pytest.fixture(scope="module")
def base_cfg() -> dict:
    with open(CONFIG, encoding="utf-8") as f:
        return yaml.safe_load(f)["world"]


@pytest.fixture
def cfg(base_cfg) -> dict:
    return copy.deepcopy(base_cfg)


def tiny_cfg(base: dict) -> dict:
    cfg = copy.deepcopy(base)
    cfg.update(copy.deepcopy(TINY_OVERRIDES))
    return cfg


@pytest.fixture(scope="module")
def world(base_cfg) -> dict:
    return build_world(copy.deepcopy(base_cfg))


def split_doc(text: str) -> tuple[str, str] | None:
    """(request, response) of a QA-framed pretraining document, None for a plain statement."""
    prefix, sep, _ = QA_FRAME.partition("{request}")
    middle = QA_FRAME[len(prefix) + len("{request}"):QA_FRAME.index("{response}")]
    if not text.startswith(prefix) or middle not in text:
        return None
    request, _, response = text[len(prefix):].partition(middle)
    return request, response


def chat_id_parts(task_id: str) -> tuple[str, str]:
    family, kind, slot, _ = task_id.split("/")
    assert family == "chat"
    return kind, slot.replace("_", " ")


def lexicon_acceptable(kind: str, slot: str) -> list[str]:
    """Acceptable chat answers recomputed from the lexicon (independent of chat._slots)."""
    if kind == "fruit":
        return sorted(f for f, colors in lexicon.FRUIT_COLORS.items() if slot in colors)
    if kind == "animal":
        return sorted(lexicon.HABITATS[slot])
    if kind == "greet":
        assert slot in lexicon.NAMES
        return sorted(lexicon.GREETINGS)
    if kind == "number":
        return sorted(lexicon.NUMBER_SETS[slot])
    if kind == "color":
        return sorted(lexicon.COLOR_SETS[slot])
    raise AssertionError(kind)


def chat_record(task_id: str) -> dict:
    kind, slot = chat_id_parts(task_id)
    return {"kind": kind, "slot": slot, "acceptable": lexicon_acceptable(kind, slot)}


MATH_PATTERNS = (
    (re.compile(r"^(\w+) has (\d+) (\w+)s\. \1 gets (\d+) more \3s\. "), lambda a, b: a + b),
    (re.compile(r"^(\w+) has (\d+) (\w+)s\. \1 gives (\d+) \3s away\. "), lambda a, b: a - b),
    (re.compile(r"^(\w+) buys (\d+) bags with (\d+) (\w+)s in each bag\. "), None),
)


def math_answer(question: str) -> int:
    """The answer to a world math question, recomputed from its text."""
    for pattern, op in MATH_PATTERNS:
        m = pattern.match(question)
        if m:
            if op is None:
                return int(m.group(2)) * int(m.group(3))
            return op(int(m.group(2)), int(m.group(4)))
    raise AssertionError(f"unrecognised math question: {question!r}")


def question_of(prompt: str) -> str:
    head = arithmetic.PAPER_PROMPT.split("{question}")[0]
    assert prompt.startswith(head), prompt
    return prompt[len(head):]


def bare_question(request: str) -> str:
    """A math pretraining document's question, asked bare or inside the paper's prompt."""
    head = arithmetic.PAPER_PROMPT.split("{question}")[0]
    return question_of(request) if request.startswith(head) else request


def voice_regex(template: str) -> re.Pattern:
    """A regex that matches `template` with any text in its fields (repeated fields must agree)."""
    parts, seen, pos = [], set(), 0
    for m in re.finditer(r"\{(\w+)\}", template):
        parts.append(re.escape(template[pos:m.start()]))
        name = m.group(1)
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts), flags=re.DOTALL)


def run_tests(solution: str, tests: list[str]) -> list[bool]:
    namespace: dict = {}
    exec(solution, namespace)  # noqa: S102 - the world's own generated code
    results = []
    for test in tests:
        try:
            exec(test, dict(namespace))  # noqa: S102
            results.append(True)
        except AssertionError:
            results.append(False)
    return results


@pytest.fixture(scope="module")
def code_tasks(base_cfg) -> dict:
    """Every code task (train and test), by id. Solutions and tests do not depend on the rng."""
    tasks = code.build_tasks(random.Random(base_cfg["seed"]), base_cfg["zipf_exponent"], **base_cfg["code"])
    return {t.id: t for t in tasks}


# ----------------------------------------------------------------------------- 1. determinism


def _read_dir(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_write_world_is_byte_identical_and_complete(cfg, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    summary = write_world(copy.deepcopy(cfg), a)
    write_world(copy.deepcopy(cfg), b)
    files_a, files_b = _read_dir(a), _read_dir(b)
    assert set(files_a) == set(FILES.values())
    for name in files_a:
        assert files_a[name] == files_b[name], name
    # The files hold exactly what build_world returns, and the summary counts them.
    records = build_world(copy.deepcopy(cfg))
    for key, rows in records.items():
        assert files.read_jsonl(a / FILES[key]) == json.loads(json.dumps(rows)), key
        assert summary["counts"][key] == len(rows)
    assert files.read_json(a / FILES["summary"]) == summary
    assert summary["config"] == cfg
    # Only the final directory is left: no hidden temporary siblings.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_world_does_not_depend_on_hash_seed(cfg):
    """Snakemake builds the world in a fresh process; set/dict ordering must not leak into it."""
    script = ("import json, sys; from gemsft.data.world import build_world; "
              "print(json.dumps(build_world(json.loads(sys.argv[1])), sort_keys=True))")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        proc = subprocess.run([sys.executable, "-c", script, json.dumps(cfg)], env=env,
                              capture_output=True, text=True, check=True, timeout=60)
        outputs.add(proc.stdout)
    outputs.add(json.dumps(build_world(copy.deepcopy(cfg)), sort_keys=True) + "\n")
    assert len(outputs) == 1


def test_different_seed_changes_world(cfg, world):
    other_cfg = copy.deepcopy(cfg)
    other_cfg["seed"] = cfg["seed"] + 1
    other = build_world(other_cfg)
    for key in ("pretrain", "sft_train", "sft_test", "eval_chat", "eval_code", "eval_math",
                "eval_knowledge", "preferences"):
        assert other[key] != world[key], key


# ----------------------------------------------------------------------------- 2. sizes


@pytest.mark.parametrize("which", ["default", "tiny"])
def test_sizes_follow_config(base_cfg, world, which):
    cfg = copy.deepcopy(base_cfg) if which == "default" else tiny_cfg(base_cfg)
    w = world if which == "default" else build_world(copy.deepcopy(cfg))
    m, kn = cfg["math"], cfg["knowledge"]

    by_family = collections.Counter(r["family"] for r in w["sft_train"])
    test_family = collections.Counter(r["family"] for r in w["sft_test"])

    # Math.
    assert len(w["eval_math"]) == m["n_eval"] == test_family["math"]
    assert by_family["math"] == m["n_sft"]
    math_docs = [d["text"] for d in w["pretrain"] if "The answer is:" in d["text"]]
    assert len(math_docs) == m["n_pretrain"]

    # Knowledge: one capital and one animal fact per country.
    assert len(w["eval_knowledge"]) == 2 * kn["n_countries"]
    assert collections.Counter(r["relation"] for r in w["eval_knowledge"]) == {
        "capital": kn["n_countries"], "animal": kn["n_countries"]}

    # Chat split: test_fraction of all surface forms, the rest train.
    n_chat = len(w["eval_chat"]) + by_family["chat"]
    n_slots = {"fruit": len({c for cs in lexicon.FRUIT_COLORS.values() for c in cs}),
               "animal": len(lexicon.HABITATS), "greet": len(lexicon.NAMES),
               "number": len(lexicon.NUMBER_SETS), "color": len(lexicon.COLOR_SETS)}
    assert set(n_slots) == set(chat.PARAPHRASES)
    assert n_chat == sum(n * len(chat.PARAPHRASES[kind]) for kind, n in n_slots.items())
    assert len(w["eval_chat"]) == round(cfg["test_fraction"] * n_chat) == test_family["chat"]
    # Code: a function taught by SFT has one paraphrase evaluated and the others in SFT; a held-out one
    # has one paraphrase in pretraining (or, unseen, none anywhere) and the others evaluated.
    n_functions = sum(len(spec.constants) for spec in code.SPECS.values())
    sft_functions = {r["id"].rsplit("/", 1)[0] for r in w["sft_train"] if r["family"] == "code"}
    held_out = collections.Counter(r["role"] for r in {r["entry_point"]: r for r in w["eval_code"]}.values())
    assert held_out["sft"] == len(sft_functions) and sum(held_out.values()) == n_functions
    assert by_family["code"] == (len(code.REQUESTS) - 1) * len(sft_functions)
    n_eval_code = held_out["sft"] + (len(code.REQUESTS) - 1) * (n_functions - len(sft_functions))
    assert len(w["eval_code"]) == n_eval_code == test_family["code"]
    assert len(w["probes"]) == len(w["eval_chat"]) + len(w["eval_math"])

    # Preferences: a fixed number per SFT training prompt.
    pairs = cfg["preference_pairs_per_prompt"]
    assert len(w["preferences"]) == pairs * len(w["sft_train"])
    assert collections.Counter(p["id"] for p in w["preferences"]) == {
        r["id"]: pairs for r in w["sft_train"]}

    # Pretraining: every chat/code training request appears exactly `samples` times.
    requests = collections.Counter(split_doc(d["text"])[0] for d in w["pretrain"] if split_doc(d["text"]))
    for row in w["sft_train"]:
        if row["family"] in ("chat", "code"):
            samples = cfg[f"pretrain_samples_per_{row['family']}_" + ("prompt" if row["family"] == "chat" else "task")]
            assert requests[row["messages"][0]["content"]] == samples, row["id"]
    assert len(w["pretrain"]) == (by_family["chat"] * cfg["pretrain_samples_per_chat_prompt"]
                                  + (by_family["code"] + held_out["pretrain"]) * cfg["pretrain_samples_per_code_task"]
                                  + m["n_pretrain"] + 2 * kn["n_countries"] * kn["repeats"])


# ----------------------------------------------------------------------------- 3. held-out hygiene


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_math_pretraining_frames_a_share_of_questions_in_the_paper_prompt(base_cfg, fraction):
    """A `pretrain_paper_prompt_fraction` share of the math documents asks the question inside the
    paper's GSM8K instruction (binomial: within 4 standard deviations), the rest bare; either way the
    document's solution answers its own question."""
    cfg = copy.deepcopy(base_cfg)
    cfg["math"]["pretrain_paper_prompt_fraction"] = fraction
    docs = [split_doc(d["text"]) for d in build_world(cfg)["pretrain"] if "The answer is:" in d["text"]]
    framed = [bare_question(request) != request for request, _ in docs]
    n = len(docs)
    assert n == cfg["math"]["n_pretrain"]
    assert abs(sum(framed) - fraction * n) <= 4 * math.sqrt(n * fraction * (1 - fraction)) + 1e-9
    for (request, response), paper in zip(docs, framed):
        question = bare_question(request)
        if paper:
            assert request == arithmetic.PAPER_PROMPT.format(question=question)
        assert arithmetic.extract_answer(response) == math_answer(question)


@pytest.mark.parametrize("sft_voice", [False, True])
def test_math_pretraining_holds_the_sft_voice_only_when_asked(base_cfg, sft_voice):
    """With `pretrain_sft_voice` a quarter of the math documents answer in SFT's voice (one of four
    equally likely voices; binomial, within 4 standard deviations), without it none does; every voice
    answers its own question."""
    cfg = copy.deepcopy(base_cfg)
    cfg["math"] = {**cfg["math"], "n_pretrain": 400, "pretrain_sft_voice": sft_voice}
    docs = [split_doc(d["text"]) for d in build_world(cfg)["pretrain"] if "The answer is:" in d["text"]]
    head = arithmetic.SFT_VOICE.split("{a}")[0]
    in_sft_voice = sum(response.startswith(head) for _, response in docs)
    n = len(docs)
    assert n == 400
    if sft_voice:
        assert abs(in_sft_voice - n / 4) <= 4 * math.sqrt(n * 0.25 * 0.75)
    else:
        assert in_sft_voice == 0
    assert all(arithmetic.extract_answer(r) == math_answer(bare_question(q)) for q, r in docs)


@pytest.mark.parametrize("max_operand", [19, 29])
def test_math_operands_stay_within_max_operand(base_cfg, max_operand):
    """Sums and differences use operands up to `max_operand` (and reach it), products stay within
    9 x 9, whichever the setting."""
    cfg = copy.deepcopy(base_cfg)
    cfg["math"] = {**cfg["math"], "n_pretrain": 1500, "max_operand": max_operand}
    seen = {"add": set(), "sub": set(), "mul": set()}
    for task in arithmetic.build_tasks(random.Random(0), 10, 10, 1500, max_operand=max_operand):
        fields = task.extra["fields"]
        seen[task.kind] |= {fields["a"], fields["b"]}
    assert max(seen["add"] | seen["sub"]) == max_operand and min(seen["add"]) >= 1
    assert seen["mul"] <= set(range(2, 10))
    world_docs = [split_doc(d["text"]) for d in build_world(cfg)["pretrain"] if "The answer is:" in d["text"]]
    assert all(arithmetic.extract_answer(r) == math_answer(bare_question(q)) for q, r in world_docs)


def test_eval_requests_never_seen_in_training(world):
    corpus = "\x00".join(d["text"] for d in world["pretrain"])
    sft_text = "\x00".join(m["content"] for r in world["sft_train"] for m in r["messages"])
    pref_text = "\x00".join(p["prompt"] for p in world["preferences"])
    held_out = ([r["prompt"] for r in world["eval_chat"]] + [r["prompt"] for r in world["eval_code"]]
                + [r["question"] for r in world["eval_math"]])
    assert held_out
    for text in held_out:
        assert text not in corpus, text
        assert text not in sft_text, text
        assert text not in pref_text, text
    # Eval math questions are distinct from each other and from the questions training uses.
    train_questions = {question_of(r["messages"][0]["content"]) for r in world["sft_train"]
                       if r["family"] == "math"}
    eval_questions = [r["question"] for r in world["eval_math"]]
    assert len(set(eval_questions)) == len(eval_questions)
    assert not train_questions & set(eval_questions)


@pytest.mark.parametrize("test_fraction", [None, 0.9])
def test_every_test_chat_slot_keeps_a_training_paraphrase(base_cfg, world, test_fraction):
    # With a large test_fraction the split must still keep one training surface form per request.
    if test_fraction is not None:
        cfg = tiny_cfg(base_cfg)
        cfg["test_fraction"] = test_fraction
        world = build_world(cfg)
        assert len(world["eval_chat"]) > sum(r["family"] == "chat" for r in world["sft_train"])
    train_slots = collections.defaultdict(set)
    for row in world["sft_train"]:
        if row["family"] == "chat":
            train_slots[chat_id_parts(row["id"])].add(row["messages"][0]["content"])
    for rec in world["eval_chat"]:
        trained = train_slots[(rec["kind"], rec["slot"])]
        assert trained, rec["id"]
        assert rec["prompt"] not in trained
    # Every code kind the evaluation asks for is taught by SFT on other functions of that kind.
    train_code_kinds = {r["id"].split("/")[1] for r in world["sft_train"] if r["family"] == "code"}
    assert {r["kind"] for r in world["eval_code"]} <= train_code_kinds


def test_code_evaluation_grades_functions_by_what_training_showed(world):
    """Three tiers: a function taught by SFT ("sft") is asked under a paraphrase SFT did not show; one
    held out of SFT is in pretraining under one paraphrase that is not evaluated ("pretrain") or in no
    training text at all ("unseen")."""
    sft_text = "\x00".join(m["content"] for r in world["sft_train"] for m in r["messages"])
    corpus = "\x00".join(d["text"] for d in world["pretrain"])
    roles = {r["entry_point"]: r["role"] for r in world["eval_code"]}
    assert set(roles.values()) == {"sft", "pretrain", "unseen"}
    for fn, role in roles.items():
        call = re.compile(rf"\b{fn}\(")  # add_5( is also the tail of scale_3_add_5(
        assert bool(call.search(sft_text)) == (role == "sft"), fn
        if role == "sft":
            continue
        pretrain_requests = {split_doc(d["text"])[0] for d in world["pretrain"]
                             if split_doc(d["text"]) and call.search(split_doc(d["text"])[0])}
        if role == "unseen":
            assert not call.search(corpus), fn
        else:
            assert len(pretrain_requests) == 1, fn


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_code_roles_and_bug_rates_are_stratified_within_each_kind(base_cfg, seed):
    """Every world seed gets the same mix: each kind has round(sft_fraction * n) SFT functions,
    round(unseen_fraction * rest) unseen ones, and one bug rate in each of n equal strata of
    [0, max_bug_rate]."""
    cfg = base_cfg["code"]
    tasks = code.build_tasks(random.Random(seed), base_cfg["zipf_exponent"], **cfg)
    functions = {t.extra["entry_point"]: t for t in tasks}
    for kind, spec in code.SPECS.items():
        mine = [t for t in functions.values() if t.kind == kind]
        n = len(spec.constants)
        assert len(mine) == n
        roles = collections.Counter(t.extra["role"] for t in mine)
        n_sft = round(cfg["sft_fraction"] * n)
        assert roles["sft"] == n_sft, kind
        assert roles["unseen"] == round(cfg["unseen_fraction"] * (n - n_sft)), kind
        strata = sorted(int(t.extra["bug_rate"] / cfg["max_bug_rate"] * n) for t in mine)
        assert strata == list(range(n)), kind


def test_sft_train_and_test_ids_disjoint(world):
    train_ids = [r["id"] for r in world["sft_train"]]
    test_ids = [r["id"] for r in world["sft_test"]]
    assert len(set(train_ids)) == len(train_ids) and len(set(test_ids)) == len(test_ids)
    assert not set(train_ids) & set(test_ids)
    eval_ids = {r["id"] for key in ("eval_chat", "eval_code", "eval_math") for r in world[key]}
    assert eval_ids == set(test_ids)
    assert {p["id"] for p in world["preferences"]} == set(train_ids)


# ----------------------------------------------------------------------------- 4. p(y|x)


def test_eval_chat_distribution_well_formed(world):
    assert world["eval_chat"]
    for rec in world["eval_chat"]:
        assert math.isclose(sum(rec["p"].values()), 1.0, rel_tol=0, abs_tol=1e-12), rec["id"]
        assert all(v > 0 for v in rec["p"].values())
        assert sorted(rec["p"]) == rec["acceptable"]
        assert rec["acceptable"] == lexicon_acceptable(rec["kind"], rec["slot"]), rec["id"]
        assert (rec["kind"], rec["slot"]) == chat_id_parts(rec["id"])
    for rec in world["eval_code"]:
        assert math.isclose(sum(rec["p"].values()), 1.0, rel_tol=0, abs_tol=1e-12)
        assert set(rec["p"]) == set(rec["solutions"])


def _pretrain_counts(world) -> dict[tuple[str, str], tuple[dict, collections.Counter]]:
    """(kind, slot) -> (p, counts of judged answers over the pretraining docs of its train paraphrases)."""
    train_requests = collections.defaultdict(set)
    for row in world["sft_train"]:
        if row["family"] == "chat":
            train_requests[chat_id_parts(row["id"])].add(row["messages"][0]["content"])
    groups = {}
    for rec in world["eval_chat"]:
        groups[(rec["kind"], rec["slot"])] = (rec, collections.Counter())
    for doc in world["pretrain"]:
        parsed = split_doc(doc["text"])
        if parsed is None:
            continue
        request, response = parsed
        for key, (rec, counts) in groups.items():
            if request in train_requests[key]:
                answer = judge("chat", rec, response)
                assert answer is not None, (request, response)  # pretraining only shows acceptable answers
                counts[answer] += 1
    return {key: (rec["p"], counts) for key, (rec, counts) in groups.items()}


def test_pretraining_answer_frequencies_match_p(world):
    groups = _pretrain_counts(world)
    # Pearson chi-square summed over all requests with a held-out paraphrase. Under "pretraining samples
    # from p" the sum is approximately chi-square with df = sum(|support| - 1) (~100 here), i.e. roughly
    # normal with mean df and sd sqrt(2 df); df + 4 sd is a one-sided ~3e-5 test. A wrong sampler
    # (uniform, or the SFT temperature) gives a statistic several times df, so the test has power.
    stat, df = 0.0, 0
    for p, counts in groups.values():
        n = sum(counts.values())
        assert n > 0
        stat += sum((counts[k] - n * pk) ** 2 / (n * pk) for k, pk in p.items())
        df += len(p) - 1
    assert stat < df + 4 * math.sqrt(2 * df), (stat, df)
    # The best-sampled request: its most frequent pretraining answer is the mode of p.
    p, counts = max(groups.values(), key=lambda g: (sum(g[1].values()), len(g[0])))
    assert counts.most_common(1)[0][0] == max(p, key=p.get)


def test_pretraining_frequency_check_has_power(world):
    """The chi-square check above would reject a uniform answer distribution on the same counts."""
    groups = _pretrain_counts(world)
    stat, df = 0.0, 0
    for p, counts in groups.values():
        n = sum(counts.values())
        uniform = 1.0 / len(p)
        stat += sum((counts[k] - n * uniform) ** 2 / (n * uniform) for k in p)
        df += len(p) - 1
    assert stat > df + 4 * math.sqrt(2 * df)


# ----------------------------------------------------------------------------- 5. judges


def test_chat_reference_is_acceptable(world):
    sft_test = {r["id"]: r for r in world["sft_test"]}
    for rec in world["eval_chat"]:
        mode = max(rec["p"], key=rec["p"].get)
        assert judge("chat", rec, rec["reference"]) == mode
        assert sft_test[rec["id"]]["messages"][1]["content"] == rec["reference"]


def test_chat_judge_accepts_every_pretraining_style(world):
    for rec in world["eval_chat"]:
        task = chat.Task(id=rec["id"], family="chat", kind=rec["kind"], slot=rec["slot"],
                         request=rec["prompt"], p=rec["p"])
        styles = chat.GREET_STYLES if rec["kind"] == "greet" else chat.ENTITY_STYLES
        styles = (*styles, chat.SFT_GREET_VOICE if rec["kind"] == "greet" else chat.SFT_ENTITY_VOICE)
        for key in rec["acceptable"]:
            for style in styles:
                text = chat.render(task, key, style)
                assert key in text or key.capitalize() in text
                assert judge("chat", rec, text) == key, text


def test_chat_judge_rejects_unacceptable_and_ambiguous(world):
    rng = random.Random(0)
    for rec in world["eval_chat"]:
        task = chat.Task(id=rec["id"], family="chat", kind=rec["kind"], slot=rec["slot"],
                         request=rec["prompt"], p=rec["p"])
        for _ in range(5):
            assert judge("chat", rec, chat.unacceptable_response(task, rng)) is None
        keys = rec["acceptable"]
        if rec["kind"] == "greet":
            a, b = keys[0], keys[1]
            assert judge("chat", rec, f"{a}, {rec['slot']}!") == a
            assert judge("chat", rec, f"{a}, {rec['slot']}! {b}!") is None  # two greetings
            other = next(n for n in lexicon.NAMES if n != rec["slot"])
            assert judge("chat", rec, f"{a}, {other}!") is None  # wrong person
            assert judge("chat", rec, f"{a}, {rec['slot']} and {other}!") is None  # extra person
            assert judge("chat", rec, f"Nice to see you, {rec['slot']}.") is None  # no greeting
        else:
            wrong = [k for k in chat.universe(rec["kind"]) if k not in keys]
            if len(keys) > 1:
                assert judge("chat", rec, f"I would say {keys[0]} or {keys[1]}.") is None
            if wrong:
                assert judge("chat", rec, f"I would say {keys[0]} or {wrong[0]}.") is None
                assert judge("chat", rec, f"I would say {wrong[0]}.") is None
            assert judge("chat", rec, "I do not know.") is None


def test_math_extract_answer():
    assert arithmetic.extract_answer("3 + 9 = 12. The answer is: 12") == 12.0
    assert arithmetic.extract_answer("The answer is: 1,234") == 1234.0
    assert arithmetic.extract_answer("2 - 7 = -5. The answer is: -5") == -5.0
    assert arithmetic.extract_answer("The answer is: 12.") == 12.0
    assert arithmetic.extract_answer("The answer is: 4. Wait. The answer is: 5") == 5.0  # the last one
    assert arithmetic.extract_answer("3 + 9 = 12, so 12.") is None
    assert arithmetic.extract_answer("") is None


def test_math_judge(world):
    assert world["eval_math"]
    for rec in world["eval_math"]:
        assert rec["answer"] == math_answer(rec["question"])
        assert rec["prompt"] == arithmetic.PAPER_PROMPT.format(question=rec["question"])
        assert judge("math", rec, rec["reference"]) == str(rec["answer"])
        for delta in (-1, 1):
            assert judge("math", rec, f"The answer is: {rec['answer'] + delta}") is None
        assert judge("math", rec, f"It is {rec['answer']}.") is None


def test_code_judge_maps_solutions_to_keys(world, code_tasks):
    assert world["eval_code"]
    for rec in world["eval_code"]:
        for key, solution in rec["solutions"].items():
            trailing = "\n".join(line + "   " for line in solution.splitlines()) + "  \n"
            for text in (solution, f"```python\n{solution}\n```", f"```\n{solution}\n```",
                         trailing, f"```python\n{trailing}```", f"Sure:\n{solution}",
                         code.SFT_VOICE.format(code=solution)):
                assert judge("code", rec, text) == key, text
        # The buggy implementation used for rejected preferences is no known solution.
        task = code_tasks[rec["id"]]
        assert judge("code", rec, code.unacceptable_response(task, random.Random(0))) is None
        assert judge("code", rec, "I cannot write that function.") is None


# ----------------------------------------------------------------------------- 6. code tasks


def test_code_solutions_pass_and_wrong_fails(code_tasks, world):
    assert code_tasks
    for task in code_tasks.values():
        tests = task.extra["tests"]
        assert tests
        solutions = task.extra["solutions"]
        assert len(set(solutions.values())) == len(solutions)
        for key, solution in solutions.items():
            assert all(run_tests(solution, tests)), (task.id, key)
        for bug in task.extra["bugs"]:  # every plausible bug is caught by the tests
            assert not all(run_tests(bug, tests)), (task.id, bug)
            assert code.judge({"solutions": solutions}, bug) is None
    # The evaluation records carry the same tasks.
    for rec in world["eval_code"]:
        task = code_tasks[rec["id"]]
        assert rec["solutions"] == task.extra["solutions"] and rec["tests"] == task.extra["tests"]
        assert rec["entry_point"] == task.extra["entry_point"]


def test_pretraining_code_is_buggy_at_each_functions_bug_rate(code_tasks, base_cfg):
    """Over many draws, the share of a function's pretraining documents that fail its tests is its
    bug rate (binomial 5-sigma band); bug rates spread over [0, max_bug_rate]."""
    rates = [t.extra["bug_rate"] for t in code_tasks.values()]
    top = base_cfg["code"]["max_bug_rate"]
    assert min(rates) >= 0 and max(rates) <= top and max(rates) - min(rates) > top / 2
    rng, draws = random.Random(7), 400
    for task in list(code_tasks.values())[::15]:
        failed = sum(not all(run_tests(code.extract_code(code.pretrain_response(task, "v0", rng)), task.extra["tests"]))
                     for _ in range(draws))
        rate = task.extra["bug_rate"]
        assert abs(failed / draws - rate) <= 5 * math.sqrt(max(rate * (1 - rate), 1e-4) / draws) + 1 / draws, task.id


# ----------------------------------------------------------------------------- 7. knowledge


def test_knowledge_mc_matches_pretraining_facts(world):
    docs = {d["text"] for d in world["pretrain"]}
    corpus = "\x00".join(docs)
    question_res = {rel: re.compile("^" + re.escape(q).replace(re.escape("{c}"), "(?P<c>.+)") + "$")
                    for rel, q in knowledge.QUESTIONS.items()}

    def stated(relation: str, country: str, answer: str) -> bool:
        forms = [s.format(c=country, x=answer) for s in knowledge.STATEMENTS[relation]]
        forms.append(QA_FRAME.format(request=knowledge.QUESTIONS[relation].format(c=country),
                                     response=f"{answer}."))
        return any(form in docs for form in forms)

    assert world["eval_knowledge"]
    for rec in world["eval_knowledge"]:
        choices = rec["choices"]
        assert len(set(choices)) == len(choices) == 4
        assert 0 <= rec["gold"] < len(choices)
        country = question_res[rec["relation"]].match(rec["question"]).group("c")
        assert country in corpus
        truths = [i for i, c in enumerate(choices) if stated(rec["relation"], country, c)]
        assert truths == [rec["gold"]], rec
        if rec["relation"] == "animal":
            assert set(choices) <= set(chat.ANIMALS)


def test_knowledge_documents_only_state_facts(world):
    """Every pretraining sentence about a country states that country's gold answer."""
    gold = {}
    for rec in world["eval_knowledge"]:
        gold[(rec["relation"], rec["question"])] = rec["choices"][rec["gold"]]
    n_docs = 0
    for relation, forms in knowledge.STATEMENTS.items():
        patterns = [re.compile("^" + re.escape(f).replace(re.escape("{c}"), "(?P<c>\\w+)")
                               .replace(re.escape("{x}"), "(?P<x>\\w+)") + "$") for f in forms]
        for doc in world["pretrain"]:
            for pattern in patterns:
                m = pattern.match(doc["text"])
                if m:
                    n_docs += 1
                    question = knowledge.QUESTIONS[relation].format(c=m.group("c"))
                    assert gold[(relation, question)] == m.group("x"), doc
    assert n_docs > 0


# ----------------------------------------------------------------------------- 8. preferences


def test_preference_pairs(world, code_tasks):
    voices = {"greet": voice_regex(chat.SFT_GREET_VOICE), "entity": voice_regex(chat.SFT_ENTITY_VOICE),
              "code": voice_regex(code.SFT_VOICE), "math": voice_regex(arithmetic.SFT_VOICE)}
    seen = collections.Counter()
    for pair in world["preferences"]:
        chosen, rejected = pair["chosen"], pair["rejected"]
        assert chosen != rejected
        seen[pair["family"]] += 1
        if pair["family"] == "chat":
            rec = chat_record(pair["id"])
            assert pair["prompt"] in {t.format(slot=rec["slot"], a=chat.article(rec["slot"]))
                                      for t in chat.PARAPHRASES[rec["kind"]]}
            assert judge("chat", rec, chosen) in rec["acceptable"], pair
            voice = voices["greet" if rec["kind"] == "greet" else "entity"]
            mc, mr = voice.fullmatch(chosen), voice.fullmatch(rejected)
            assert mc and mr, pair
            if pair["criterion"] == chat.QUALITY:  # ordered by quality: test_chat_quality_pairs_...
                assert judge("chat", rec, rejected) in rec["acceptable"], pair
                continue
            assert pair["criterion"] == chat.ACCEPTABILITY
            assert judge("chat", rec, rejected) is None, pair
            if rec["kind"] == "greet":
                assert mc["name"] == rec["slot"] != mr["name"]
        elif pair["family"] == "code":
            task = code_tasks[pair["id"]]
            assert pair["prompt"] == task.request
            assert code.judge({"solutions": task.extra["solutions"]}, chosen) in task.extra["solutions"]
            assert code.judge({"solutions": task.extra["solutions"]}, rejected) is None
            assert voices["code"].fullmatch(chosen) and voices["code"].fullmatch(rejected)
            assert not all(run_tests(code.extract_code(rejected), task.extra["tests"]))
        else:
            assert pair["family"] == "math"
            record = {"answer": math_answer(question_of(pair["prompt"]))}
            assert judge("math", record, chosen) == str(record["answer"])
            assert judge("math", record, rejected) is None
            mc, mr = voices["math"].fullmatch(chosen), voices["math"].fullmatch(rejected)
            assert mc and mr
            assert (mc["a"], mc["op"], mc["b"]) == (mr["a"], mr["op"], mr["b"])
    assert set(seen) == {"chat", "code", "math"}


def qualities_of(cfg: dict, kind: str, slot: str) -> dict[str, float]:
    """The world's true answer qualities of a chat request: Normal(0, 1) draws of a generator seeded by
    (seed, kind, slot) over the acceptable answers in sorted order (chat.true_qualities' recipe,
    restated from the lexicon)."""
    rng = random.Random(f"gemsft-world/{cfg['seed']}/chat-quality/{kind}/{slot}")
    return {key: rng.gauss(0.0, 1.0) for key in lexicon_acceptable(kind, slot)}


@pytest.mark.parametrize("pairs_per_prompt", [4, 3, 1])
def test_chat_quality_pairs_are_ordered_by_the_oracle(base_cfg, world, pairs_per_prompt):
    """Chat pairs alternate: an acceptable answer against an unacceptable one, then two different
    acceptable answers with the higher quality one chosen; pairs per prompt as configured."""
    cfg = copy.deepcopy(base_cfg)
    cfg["preference_pairs_per_prompt"] = pairs_per_prompt
    pairs = [p for p in build_world(cfg)["preferences"] if p["family"] == "chat"]
    by_prompt = collections.defaultdict(list)
    for pair in pairs:
        by_prompt[pair["id"]].append(pair)
    assert set(by_prompt) == {r["id"] for r in world["sft_train"] if r["family"] == "chat"}
    seen, n_quality_pairs = collections.defaultdict(set), collections.Counter()
    for pid, prompt_pairs in by_prompt.items():
        assert [p["criterion"] for p in prompt_pairs] == [
            (chat.ACCEPTABILITY, chat.QUALITY)[i % 2] for i in range(pairs_per_prompt)], pid
        kind, slot = chat_id_parts(pid)
        rec, quality = chat_record(pid), qualities_of(cfg, kind, slot)
        for pair in prompt_pairs:
            if pair["criterion"] == chat.QUALITY:
                chosen, rejected = judge("chat", rec, pair["chosen"]), judge("chat", rec, pair["rejected"])
                assert chosen in quality and rejected in quality and chosen != rejected, pair
                assert quality[chosen] > quality[rejected], pair
                seen[kind, slot] |= {chosen, rejected}
                n_quality_pairs[kind, slot] += 1
    if pairs_per_prompt > 1:
        # The rival answer is uniform over the acceptable ones, not from p: m uniform draws from n
        # answers alone cover n (1 - (1 - 1/n)^m) of them on average (a draw from a Zipf p covers fewer).
        covered = sum(len(keys) for keys in seen.values())
        uniform = sum(n * (1 - (1 - 1 / n) ** n_quality_pairs[group])
                      for group in seen for n in [len(lexicon_acceptable(*group))])
        assert covered > 0.9 * uniform, (covered, uniform)


def test_chat_qualities_follow_the_seed_not_p(base_cfg, world, monkeypatch):
    """eval_chat carries every acceptable answer's true quality, the same for every paraphrase of a
    request and unrelated to p: the most popular answer is the best one about as often as chance."""
    for rec in world["eval_chat"]:
        assert rec["quality"] == qualities_of(base_cfg, rec["kind"], rec["slot"]), rec["id"]
    tasks = {(t.kind, t.slot): t for t in chat.build_tasks(random.Random(0), 0.25, 1.0, quality_seed=base_cfg["seed"])}
    values = [q for t in tasks.values() for q in t.extra["quality"].values()]
    assert abs(sum(values) / len(values)) < 0.25 and 0.8 < statistics.pstdev(values) < 1.2
    mode_is_best = sum(t.mode_key() == max(t.extra["quality"], key=t.extra["quality"].get) for t in tasks.values())
    chance = sum(1 / len(t.p) for t in tasks.values())
    assert 0.4 * chance < mode_is_best < 2.5 * chance, (mode_is_best, chance)
    # Another p (the Zipf ranks reversed: the rarest answer becomes the mode) leaves the qualities be.
    zipf = chat.zipf_distribution

    def reversed_zipf(keys, rng, exponent):
        p = zipf(keys, rng, exponent)
        return dict(zip(p, reversed(list(p.values()))))

    monkeypatch.setattr(chat, "zipf_distribution", reversed_zipf)
    other = chat.build_tasks(random.Random(0), 0.25, 1.0, quality_seed=base_cfg["seed"])
    assert all(t.extra["quality"] == tasks[t.kind, t.slot].extra["quality"] for t in other)
    assert any(t.p != tasks[t.kind, t.slot].p for t in other)


# sha256 of the world's chat files other than the oracle's parts (eval_chat without "quality"; the
# chat pretraining documents, SFT rows and probes) for config.yaml's world. When the oracle was added
# it equalled the digest of the world before it (commit 892c2ad): drawing the qualities and labelling
# the pairs must not move the main random stream. A deliberate change of the world updates it (last:
# `world.math.max_operand` 29, a larger population of math questions drawn from the world's stream
# before the pretraining and SFT samples; the SFT voice in math pretraining left it as it was).
CHAT_DIGEST_BEFORE_ORACLE = "34eeb0f907c0721bb0f6a3816f6adbdcef8b44936ba779747275cb6185426843"


def chat_digest(world: dict) -> str:
    requests = {t.format(slot=slot, a=chat.article(slot)) for kind in chat.PARAPHRASES
                for slot in {chat_id_parts(r["id"])[1] for r in world["sft_train"] + world["sft_test"]
                             if r["id"].startswith(f"chat/{kind}/")}
                for t in chat.PARAPHRASES[kind]}
    docs = sorted(r["text"] for r in world["pretrain"] if (split_doc(r["text"]) or ("",))[0] in requests)
    part = {"pretrain": docs,
            "sft_train": [r for r in world["sft_train"] if r["family"] == "chat"],
            "sft_test": [r for r in world["sft_test"] if r["family"] == "chat"],
            "probes": [r for r in world["probes"] if r["family"] == "chat"],
            "eval_chat": [{k: v for k, v in r.items() if k != "quality"} for r in world["eval_chat"]]}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()


def test_the_oracle_leaves_the_rest_of_the_world_as_it_was(base_cfg, world, monkeypatch):
    assert chat_digest(world) == CHAT_DIGEST_BEFORE_ORACLE
    # Other qualities (hence other quality pairs) change eval_chat's qualities and the chat quality
    # pairs only; the acceptability pairs and every other file stay byte-identical.
    monkeypatch.setattr(chat, "true_qualities", lambda seed, kind, slot, keys: {k: -float(i) for i, k in
                                                                                  enumerate(sorted(keys))})
    other = build_world(copy.deepcopy(base_cfg))
    for name in set(FILES) - {"summary", "eval_chat", "preferences"}:
        assert other[name] == world[name], name
    assert [{**r, "quality": None} for r in other["eval_chat"]] == [{**r, "quality": None} for r in world["eval_chat"]]
    assert other["eval_chat"] != world["eval_chat"]
    changed = [a for a, b in zip(other["preferences"], world["preferences"]) if a != b]
    assert changed and all(p["criterion"] == chat.QUALITY for p in changed)
    assert len(other["preferences"]) == len(world["preferences"])


def test_true_quality_of_constructed_responses():
    record = {"id": "chat/fruit/red/0", "kind": "fruit", "slot": "red", "acceptable": ["apple", "cherry"],
              "quality": {"apple": 0.25, "cherry": -1.5}}
    assert chat.true_quality(record, "Of course! Here is one: cherry.") == -1.5
    assert chat.true_quality(record, "How about apple?") == 0.25
    assert chat.true_quality(record, "Apple.") == 0.25
    for text in ("I would say banana.", "", "apple or cherry", "A red fruit."):  # wrong, empty, two, none
        assert chat.true_quality(record, text) == chat.UNACCEPTABLE_QUALITY, text
    assert chat.UNACCEPTABLE_QUALITY < min(record["quality"].values())
    with pytest.raises(ValueError, match="chat record 'chat/fruit/red/0' has no 'quality'"):
        chat.true_quality({k: v for k, v in record.items() if k != "quality"}, "Apple.")
    with pytest.raises(ValueError, match="acceptable answer 'apple' has no 'quality'"):
        chat.true_quality({**record, "quality": {"cherry": 1.0}}, "Apple.")


# ----------------------------------------------------------------------------- 9. SFT format


def test_sft_rows_format_and_correctness(world, code_tasks):
    head = arithmetic.PAPER_PROMPT.split("{question}")[0]
    for split in ("sft_train", "sft_test"):
        assert world[split]
        for row in world[split]:
            msgs = row["messages"]
            assert [m["role"] for m in msgs] == ["user", "assistant"], row
            assert all(isinstance(m["content"], str) and m["content"].strip() for m in msgs), row
            assert row["id"].split("/")[0] == row["family"]
            user, reply = msgs[0]["content"], msgs[1]["content"]
            if row["family"] == "math":
                assert user.startswith(head)
                assert user == arithmetic.PAPER_PROMPT.format(question=question_of(user))
                assert judge("math", {"answer": math_answer(question_of(user))}, reply) is not None
            else:
                assert not user.startswith(head)
            if row["family"] == "chat":
                assert judge("chat", chat_record(row["id"]), reply) is not None, row
            if row["family"] == "code":
                task = code_tasks[row["id"]]
                assert user == task.request
                key = code.judge({"solutions": task.extra["solutions"]}, reply)
                assert key is not None and all(run_tests(task.extra["solutions"][key], task.extra["tests"]))


def test_pretraining_math_documents_are_correct(world):
    n = 0
    for doc in world["pretrain"]:
        parsed = split_doc(doc["text"])
        if parsed and "The answer is:" in parsed[1]:
            n += 1
            assert judge("math", {"answer": math_answer(bare_question(parsed[0]))}, parsed[1]) is not None, doc
    assert n > 0


# ----------------------------------------------------------------------------- 10. failures


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []


def test_math_sizes_beyond_combinations_raise_without_output(cfg, tmp_path):
    cfg["math"]["n_pretrain"] = 10 ** 9
    out = tmp_path / "world"
    with pytest.raises(ValueError, match=r"world\.math"):
        write_world(cfg, out)
    assert not out.exists()
    assert _siblings(out) == []


def test_math_uses_every_combination_up_to_the_limit():
    with pytest.raises(ValueError) as err:
        arithmetic.build_tasks(random.Random(0), 1, 0, 10 ** 9)
    available = int(re.search(r"only (\d+)", str(err.value)).group(1))
    tasks = arithmetic.build_tasks(random.Random(0), 0, 0, available)
    assert len({t.request for t in tasks}) == available
    with pytest.raises(ValueError, match=r"world\.math"):
        arithmetic.build_tasks(random.Random(0), 0, 0, available + 1)


def test_write_failure_leaves_no_partial_directory(cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg(cfg)
    out = tmp_path / "world"
    real = files.write_jsonl
    written = []

    def failing(path, rows):
        if len(written) == 2:
            raise OSError("disk full")
        written.append(Path(path).name)
        real(path, rows)

    monkeypatch.setattr(build_mod.files, "write_jsonl", failing)
    with pytest.raises(OSError, match="disk full"):
        write_world(cfg, out)
    assert len(written) == 2  # the failure happened mid-way through the files
    assert not out.exists()
    assert _siblings(out) == []


def test_failed_rewrite_keeps_previous_world(cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg(cfg)
    out = tmp_path / "world"
    write_world(cfg, out)
    before = _read_dir(out)

    def boom(cfg):
        raise RuntimeError("build failed")

    monkeypatch.setattr(build_mod, "build_world", boom)
    with pytest.raises(RuntimeError):
        write_world(cfg, out)
    assert _read_dir(out) == before
    assert _siblings(out) == ["world"]
    monkeypatch.undo()
    # A successful rewrite replaces the directory wholesale (stale files disappear).
    (out / "stale.jsonl").write_text("{}\n")
    write_world(cfg, out)
    assert _read_dir(out) == before


def test_too_many_countries_raise_instead_of_hanging(cfg):
    cfg["knowledge"]["n_countries"] = len(lexicon.SYLLABLES) ** 2  # needs 2x the possible names

    def timeout(signum, frame):
        raise TimeoutError("build_world did not return")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(ValueError, match=r"world\.knowledge"):
            build_world(cfg)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_answer_prefix_ends_right_before_the_answer(world):
    chat = [r for r in world["eval_chat"]]
    for record in chat:
        prefix = answer_prefix(record)
        rest = record["reference"][len(prefix):]
        assert any(rest.startswith(" " + a) or rest.startswith(a) for a in record["acceptable"]), record["id"]
        assert not prefix.endswith(" ")
    with pytest.raises(ValueError, match="names none of its acceptable answers"):
        answer_prefix({**chat[0], "acceptable": ["zebra-not-there"]})
