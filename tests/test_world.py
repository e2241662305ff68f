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
import json
import math
import os
import random
import re
import signal
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
    "math": {"n_eval": 5, "n_sft": 7, "n_pretrain": 11},
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
    tasks = code.build_tasks(random.Random(base_cfg["seed"]), base_cfg["test_fraction"],
                             base_cfg["zipf_exponent"])
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

    # Chat/code split: test_fraction of all surface forms, the rest train.
    n_chat = len(w["eval_chat"]) + by_family["chat"]
    n_code = len(w["eval_code"]) + by_family["code"]
    n_slots = {"fruit": len({c for cs in lexicon.FRUIT_COLORS.values() for c in cs}),
               "animal": len(lexicon.HABITATS), "greet": len(lexicon.NAMES),
               "number": len(lexicon.NUMBER_SETS), "color": len(lexicon.COLOR_SETS)}
    assert set(n_slots) == set(chat.PARAPHRASES)
    assert n_chat == sum(n * len(chat.PARAPHRASES[kind]) for kind, n in n_slots.items())
    assert n_code == len(code.REQUESTS) * sum(len(spec.ks) for spec in code.SPECS.values())
    assert len(w["eval_chat"]) == round(cfg["test_fraction"] * n_chat) == test_family["chat"]
    assert len(w["eval_code"]) == round(cfg["test_fraction"] * n_code) == test_family["code"]
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
                                  + by_family["code"] * cfg["pretrain_samples_per_code_task"]
                                  + m["n_pretrain"] + 2 * kn["n_countries"] * kn["repeats"])


# ----------------------------------------------------------------------------- 3. held-out hygiene


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
    # Code test tasks also keep a training task of the same kind.
    train_code_kinds = {r["id"].split("/")[1] for r in world["sft_train"] if r["family"] == "code"}
    assert {r["kind"] for r in world["eval_code"]} <= train_code_kinds


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
        assert not all(run_tests(task.extra["wrong"], tests)), task.id
        assert code.judge({"solutions": solutions}, task.extra["wrong"]) is None
    # The evaluation records carry the same tasks.
    for rec in world["eval_code"]:
        task = code_tasks[rec["id"]]
        assert rec["solutions"] == task.extra["solutions"] and rec["tests"] == task.extra["tests"]
        assert rec["entry_point"] == task.extra["entry_point"]


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
            assert judge("chat", rec, rejected) is None, pair
            voice = voices["greet" if rec["kind"] == "greet" else "entity"]
            mc, mr = voice.fullmatch(chosen), voice.fullmatch(rejected)
            assert mc and mr, pair
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
            assert judge("math", {"answer": math_answer(parsed[0])}, parsed[1]) is not None, doc
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
