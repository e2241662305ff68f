"""The paper tier rehearsed on a CPU: config/paper-rehearsal.yaml (config/paper.yaml at CI sizes) runs
the whole DAG with the paper's hub ids resolved offline from a Hugging Face cache built here
(tests/hub_cache.py: tiny stand-ins under meta-llama/Llama-3.1-8B, its Instruct tokenizer and
FsfairX), a Llama-3.1-style tokenizer, DeepSpeed ZeRO-2, vLLM sampling, a sequence-classification
reward model, the real data with its empty-turn row, and the leaderboard through lm-eval.

The checks read the outputs: every sample ends its turn (finish reason "stop", no header text), the
rewards are the reward model's own (recomputed here) on the configured device and dtype, the data
stage drops and reports the empty-turn row, and the rehearsal differs from paper.yaml in sizes only."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import MIRROR, REPO, copy_project, planned_jobs, run_snakemake
from gemsft import files
from gemsft.data.leaderboard import LEADERBOARD_TASKS
from gemsft.evaluate.leaderboard import task_label
from gemsft.model_loading import dtype_name
from hub_cache import BASE_ID, INSTRUCT_ID, REVISIONS, REWARD_ID, build_paper_hub_cache, stand_in_texts
from llama31_tokenizer import CHAT_TEMPLATE, END_HEADER, END_OF_TEXT, EOT, START_HEADER

REHEARSAL, PAPER = REPO / "config/paper-rehearsal.yaml", REPO / "config/paper.yaml"
MODEL = "llama-3.1-8b"
BASE_RUN = f"{MODEL}/base/beta-na/seed-0"
SFT_RUNS = (f"{MODEL}/ce/beta-na/seed-1234", f"{MODEL}/gem/beta-0.7/seed-1234")
EMPTY_TURN_ROW = 833  # the mirror's UltraFeedback train row with an empty chosen answer
# What may differ from paper.yaml: sizes (and where the data comes from: CI has no hub).
SIZE_KEYS = {
    "data.real.sft.limit", "data.real.sft.test_limit", "data.real.chat.limit", "data.real.math.limit",
    "train.objectives", "train.gem_betas", "train.max_steps", "train.logging_steps", "train.save_steps",
    "sampling.tasks.chat.max_tokens", "sampling.tasks.humaneval.max_tokens", "sampling.tasks.humaneval.prompts",
    "sampling.tasks.math.max_tokens", "sampling.base.prompts", "evaluation.leaderboard_limit",
}
LOCATION_KEYS = {"data_mirror"}
# The AlpacaEval judge (a local Llama-3-70B) has no CPU stand-in: the rehearsal turns it off, and
# tests/test_alpaca_eval.py runs the rule through the same vLLM decoder with the tiny model as the judge.
JUDGE_KEYS = {"evaluation.alpaca_eval", "evaluation.alpaca_eval.annotators_config"}
# Text that only a sample running past its turn (into a header or the template's next turn) contains.
TURN_LEAKS = (START_HEADER, END_HEADER, EOT, END_OF_TEXT, "<|", "assistant\n\n", "user\n\n", "system\n\n",
              "Cutting Knowledge Date")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def flatten(config: dict, prefix: str = "") -> dict:
    """{"a.b.c": value} of nested mappings (lists are values)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------- the config (fast)


def test_the_rehearsal_differs_from_the_paper_config_in_sizes_only():
    paper, rehearsal = flatten(load(PAPER)), flatten(load(REHEARSAL))
    differing = {key for key in paper.keys() | rehearsal.keys()
                 if paper.get(key, "<absent>") != rehearsal.get(key, "<absent>")}
    allowed = SIZE_KEYS | LOCATION_KEYS | JUDGE_KEYS
    assert differing <= allowed, f"not a size: {sorted(differing - allowed)}"
    assert rehearsal["data_mirror"] is None  # GEMSFT_DATA_MIRROR
    for key in differing & SIZE_KEYS:
        small, full = rehearsal.get(key), paper.get(key)
        if isinstance(full, list):  # a sub-matrix of the paper's, keeping its main setting
            assert small and set(small) <= set(full), key
        elif key in paper and full is not None:  # a smaller number (null is "all")
            assert small <= full, key
        elif key == "train.max_steps":
            assert small >= 2, key  # at least one step after the warm-up's zero learning rate
        else:
            assert small is not None, key
    assert {"ce", "gem"} <= set(rehearsal["train.objectives"]) and 0.7 in rehearsal["train.gem_betas"]
    # Row 833 (the empty turn) is among the rows read, and best-of-N reaches the paper's largest N.
    assert rehearsal["data.real.sft.limit"] > EMPTY_TURN_ROW
    assert rehearsal["sampling.tasks.chat.n"] >= max(rehearsal["evaluation.bon_n"])


def test_the_rehearsal_plans_every_rule_the_paper_config_plans(tmp_path):
    """Sizes, not code paths: the same rules, fewer jobs."""
    project = copy_project(tmp_path)
    plans = {}
    for config in (PAPER, REHEARSAL):
        result = run_snakemake(project, "-n", "--cores", "2", "--configfile", str(config.relative_to(REPO)),
                               "--config", f"data_mirror={MIRROR}")
        plans[config.name] = planned_jobs(result)
    paper, rehearsal = plans["paper.yaml"], plans["paper-rehearsal.yaml"]
    # The one rule the rehearsal leaves out: AlpacaEval's 70B judge (JUDGE_KEYS).
    assert set(rehearsal) == set(paper) - {"alpaca_eval"} and paper["alpaca_eval"] == paper["evaluate_chat"]
    assert rehearsal["train"] == 2 and paper["train"] == 5 * 2 + 4  # GEM x 5 betas, 4 other objectives
    assert {"sample_base", "reward_model", "pretrain"} & set(paper) == {"sample_base"}  # hub base and RM


def test_an_unlaunched_deepspeed_run_gets_a_process_group_of_one(monkeypatch):
    """DeepSpeed in one process (a CPU, or a single-GPU job) without a launcher looked for MPI to find
    its process group and stopped on `import mpi4py`; gemsft.train.launch now gives it a group of one."""
    from gemsft.train import launch

    seen = []
    monkeypatch.setattr(launch, "run_task", lambda task, kwargs: seen.append({n: os.environ.get(n)
                                                                              for n in launch.DISTRIBUTED_ENV}))
    for name in launch.DISTRIBUTED_ENV:
        # setenv first: monkeypatch then restores the variable's absence, which launch.run's own
        # os.environ.update would otherwise leave behind for every later test (as a distributed
        # environment: accelerate then sets torch's threads itself).
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    launch.run("finetune", {"cfg": {"deepspeed": None}}, processes=1)
    assert seen.pop() == dict.fromkeys(launch.DISTRIBUTED_ENV)  # without DeepSpeed nothing is set
    launch.run("finetune", {"cfg": {"deepspeed": "config/deepspeed/zero2.json"}}, processes=1)
    # Port 0: the store binds whatever port is free, so two runs side by side never collide.
    assert seen.pop() == {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                          "MASTER_PORT": "0"}
    # A launcher's own variables are kept.
    launched = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29555"}
    for name, value in launched.items():
        monkeypatch.setenv(name, value)
    launch.run("finetune", {"cfg": {"deepspeed": "config/deepspeed/zero2.json"}}, processes=1)
    assert seen.pop() == launched


# --------------------------------------------------------------------------- the run (slow)

TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    """HF_HOME whose hub cache holds the stand-ins under the paper's ids, built from mirror text the
    rehearsal does not read (tests/hub_cache.py)."""
    texts = stand_in_texts(MIRROR, load(REHEARSAL)["data"]["real"]["sft"]["limit"])
    home = tmp_path_factory.mktemp("hf_home")
    built = build_paper_hub_cache(home, texts, work_dir=tmp_path_factory.getbasetemp())
    TIMES["hub cache"] = built["seconds"]
    # The stand-in learned its lessons: the loss is near the floor set by the choice among its replies.
    assert sum(built["losses"][-20:]) / 20 < 0.6, built["losses"][-20:]
    return home


@pytest.fixture(scope="module")
def rehearsal(hf_home, tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("paper_rehearsal"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HOME", str(hf_home))
        env.delenv("HF_HUB_CACHE", raising=False)
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            env.setenv(name, "1")
        env.setenv("VLLM_NO_USAGE_STATS", "1")
        start = time.perf_counter()
        run_snakemake(project, "--profile", "profiles/local", "--cores", "2", "--configfile",
                      "config/paper-rehearsal.yaml", "--config", f"data_mirror={MIRROR}")
        TIMES["DAG"] = time.perf_counter() - start
    print(f"\npaper rehearsal: hub cache {TIMES['hub cache']:.0f} s, DAG {TIMES['DAG']:.0f} s")
    return project


def snapshot(hf_home: Path, repo_id: str) -> Path:
    return hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / REVISIONS[repo_id]


def config(project: Path) -> dict:
    return load(project / "config/paper-rehearsal.yaml")


@pytest.mark.slow
@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")
def test_hub_ids_resolve_from_the_local_cache_with_the_instruct_template(rehearsal, hf_home):
    # Nothing was fetched: the cache holds the three repos it was built with.
    assert {p.name for p in (hf_home / "hub").glob("models--*")} == {
        f"models--{r.replace('/', '--')}" for r in (BASE_ID, INSTRUCT_ID, REWARD_ID)}
    base = snapshot(hf_home, BASE_ID)
    # lm-eval (and every other stage of the base run) loaded the base model's cached snapshot.
    args = files.read_json(rehearsal / f"results/eval/{BASE_RUN}/lm_eval_results.json")["gemsft"]["model_args"]
    assert args["pretrained"] == str(base.resolve())
    assert {args["dtype"], args["attn_implementation"]} == {dtype_name("auto", "cpu"), "sdpa"}
    # SFT formatted the base model's data with the Instruct repo's template (the base has none) and
    # saved it with the model; the base model's generation config still ends on <|end_of_text|> only.
    assert json.loads((base / "tokenizer_config.json").read_text()).get("chat_template") is None
    assert not (base / "chat_template.jinja").exists()
    from transformers import AutoTokenizer

    for run in SFT_RUNS:
        model_dir = rehearsal / f"results/sft/{run}/model"
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        assert tokenizer.chat_template == CHAT_TEMPLATE
        assert tokenizer.eos_token == END_OF_TEXT  # the base model's tokenizer, the Instruct template
        generation = json.loads((model_dir / "generation_config.json").read_text())
        assert generation["eos_token_id"] == tokenizer.convert_tokens_to_ids(END_OF_TEXT)


@pytest.mark.slow
@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")
def test_every_sample_ends_at_the_end_of_its_turn(rehearsal):
    tasks = config(rehearsal)["sampling"]["tasks"]
    samples = {path: files.read_jsonl(path) for path in sorted((rehearsal / "results/samples").rglob("*.jsonl"))}
    expected = {f"{run}/{name}.jsonl" for run in SFT_RUNS for name in ("chat", "humaneval", "math", "math_greedy")}
    assert {str(p.relative_to(rehearsal / "results/samples")) for p in samples} == expected | {f"{BASE_RUN}/chat.jsonl"}
    for path, rows in samples.items():
        assert rows and {r["finish_reason"] for r in rows} == {"stop"}, path
        for row in rows:
            assert row["text"].strip() and not any(leak in row["text"] for leak in TURN_LEAKS), (path, row)
        if BASE_RUN in str(path):
            # The 5-shot base model goes on with a next "Q:" turn of its own, cut off (finish "stop").
            assert not any("Q:" in r["text"] for r in rows)
            assert any(r["num_tokens"] == tasks["chat"]["max_tokens"] for r in rows)
        else:
            # A fine-tuned model ends its turn with <|eot_id|> long before max_tokens: its generation
            # config's EOS is <|end_of_text|>, so only the template's end-of-turn token stopped it.
            task = path.stem.removesuffix("_greedy")
            assert max(r["num_tokens"] for r in rows) < tasks[task]["max_tokens"] // 4, path
    # Every stage that reads samples reports none truncated.
    for run in SFT_RUNS:
        for stage in ("diversity", "humaneval", "math"):
            rows = files.read_json(rehearsal / f"results/eval/{run}/{stage}.json")["rows"]
            assert [r["value"] for r in rows if r["metric"] == "truncated"] == [0.0], (run, stage)
    truncation = pd.read_csv(rehearsal / "results/tables/truncation.csv")
    assert not truncation["flag"].notna().any()


@pytest.mark.slow
@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")
def test_the_reward_is_the_sequence_classifiers_on_the_configured_device_and_dtype(rehearsal, hf_home):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm_dir = snapshot(hf_home, REWARD_ID)
    assert json.loads((rm_dir / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    assert json.loads((rm_dir / "config.json").read_text())["dtype"] == "bfloat16"  # as FsfairX ships
    settings = config(rehearsal)["reward_model"]
    chat = {r["id"]: r for r in files.read_jsonl(rehearsal / "results/data/eval_chat.jsonl")}
    # An independent scorer: transformers' own pooling at the last token, float32, one conversation at a time.
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    for run in SFT_RUNS:
        stage = files.read_json(rehearsal / f"results/eval/{run}/chat_quality.json")
        # dtype auto on a CPU is float32, not the checkpoint's bf16; the configured attention.
        assert stage["reward_model"] == {"model": REWARD_ID, "device": "cpu",
                                         "dtype": dtype_name(settings["dtype"], "cpu"),
                                         "attn_implementation": settings["attn_implementation"]}
        bon_n = config(rehearsal)["evaluation"]["bon_n"]
        assert {(r["metric"], r["k"]) for r in stage["rows"]} == {
            (m, k) for m in ("bon_reward", "win_rate", "hard_win_rate") for k in bon_n}
        samples = {(s["prompt_id"], s["sample_index"]): s["text"]
                   for s in files.read_jsonl(rehearsal / f"results/samples/{run}/chat.jsonl")}
        scores = files.read_jsonl(rehearsal / f"results/scores/{run}/chat.jsonl")
        assert len(scores) == len(samples) + len(chat) and all(math.isfinite(s["reward"]) for s in scores)
        picked = [s for s in scores if s["sample_index"] in (None, 0, 31)]
        with torch.no_grad():
            for score in picked:
                prompt = chat[score["prompt_id"]]["prompt"]
                response = (chat[score["prompt_id"]]["reference"] if score["sample_index"] is None
                            else samples[score["prompt_id"], score["sample_index"]])
                ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                                     {"role": "assistant", "content": response}],
                                                    tokenize=True, return_dict=True)["input_ids"]
                ids = ids[-settings["max_length"]:]
                expected = model(input_ids=torch.tensor([ids])).logits[0, 0].item()
                assert score["reward"] == pytest.approx(expected, rel=1e-4, abs=1e-5), score


@pytest.mark.slow
@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")
def test_the_data_stage_drops_the_empty_turn_row_and_reports_it(rehearsal):
    limit = config(rehearsal)["data"]["real"]["sft"]["limit"]
    raw = files.read_jsonl(MIRROR / "ultrafeedback/train_clean.jsonl", limit)
    assert raw[EMPTY_TURN_ROW]["chosen"] == ""
    assert all(r["prompt"].strip() and r["chosen"].strip() for i, r in enumerate(raw) if i != EMPTY_TURN_ROW)
    empty_id = f"ultrafeedback_train/{raw[EMPTY_TURN_ROW]['source_index']}"
    report = files.read_json(rehearsal / "results/data/data_report.json")["files"]
    assert report["sft_train"] == {"file": "sft_train.jsonl", "dataset": "ultrafeedback_train", "rows_in": limit,
                                   "rows_out": limit - 1, "dropped": {"empty_turn": 1},
                                   "dropped_ids": {"empty_turn": [empty_id]}}
    assert all(entry["dropped"] == {} for name, entry in report.items() if name != "sft_train")
    written = [r["id"] for r in files.read_jsonl(rehearsal / "results/data/sft_train.jsonl")]
    assert len(written) == limit - 1 and empty_id not in written
    # SFT read the rows written; the paper's length policy dropped the conversations over 2048 tokens.
    table = pd.read_csv(rehearsal / "results/tables/data.csv").set_index("file")
    for run in SFT_RUNS:
        metrics = files.read_json(rehearsal / f"results/sft/{run}/train_metrics.json")
        assert metrics["rows"] == limit - 1 and 0 < metrics["examples"] < metrics["rows"]
        assert table.loc["sft_train.jsonl", "SFT: trained on"] == metrics["examples"]
    assert table.loc["sft_train.jsonl", "dropped: empty turn"] == 1
    assert table.loc["sft_train.jsonl", "SFT: left out by length policy"].startswith(
        f"{limit - 1 - metrics['examples']} (drop at 2048 tokens)")


@pytest.mark.slow
@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")
def test_sft_ran_the_papers_schedule_under_deepspeed_with_ce_and_gem(rehearsal):
    train = config(rehearsal)["train"]
    finals = {}
    for run in SFT_RUNS:
        metrics = files.read_json(rehearsal / f"results/sft/{run}/train_metrics.json")
        assert metrics["finite"] and metrics["global_steps"] == train["max_steps"]
        assert [e["step"] for e in metrics["log_history"] if "loss" in e] == list(range(1, train["max_steps"] + 1))
        finals[run.split("/")[1]] = metrics["final"]
        log = (rehearsal / f"results/logs/train/{run}.log").read_text()
        assert "DeepSpeed" in log, run  # ZeRO-2 (config/deepspeed/zero2.json) in a process group of one
        # keep_checkpoints false: the run's ZeRO checkpoint (save_steps 1) is gone once its model is written.
        assert not (rehearsal / f"results/checkpoints/sft/{run}").exists()
        distance = {r["metric"]: r["value"] for r in
                    files.read_json(rehearsal / f"results/eval/{run}/model_stats.json")["rows"]}
        assert distance["l2_distance_from_base"] > 0  # the weights moved
    # CE's loss is its cross-entropy; GEM's (the fused loss) is not.
    assert finals["ce"]["loss"] == pytest.approx(finals["ce"]["ce"], rel=1e-5)
    assert abs(finals["gem"]["loss"] - finals["gem"]["ce"]) > 0.1


@pytest.mark.slow
@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no data mirror at {MIRROR}")
def test_leaderboard_humaneval_and_gsm8k_stages_of_every_run(rehearsal):
    cfg = config(rehearsal)
    for run in (BASE_RUN, *SFT_RUNS):
        saved = files.read_json(rehearsal / f"results/eval/{run}/lm_eval_results.json")
        assert {t: saved["n-shot"][t] for t in LEADERBOARD_TASKS} == {t: s for t, (s, _) in LEADERBOARD_TASKS.items()}
        stage = files.read_json(rehearsal / f"results/eval/{run}/knowledge.json")
        rows = {(r["task"], r["metric"]) for r in stage["rows"]}
        assert rows == {(task_label(t), m.partition(",")[0]) for t, (_, m) in LEADERBOARD_TASKS.items()}
    for run in SFT_RUNS:
        humaneval = files.read_json(rehearsal / f"results/eval/{run}/humaneval.json")
        assert {r["k"] for r in humaneval["rows"] if r["metric"].startswith("pass")} == set(cfg["evaluation"]["pass_k"])
        executions = files.read_jsonl(rehearsal / f"results/eval/{run}/humaneval_executions.jsonl")
        assert len(executions) == cfg["sampling"]["tasks"]["humaneval"]["n"]
        math_stage = files.read_json(rehearsal / f"results/eval/{run}/math.json")
        assert {r["prompt_id"] for r in math_stage["per_prompt"]} == {f"gsm8k/{i}" for i in range(4)}
    metrics = pd.read_csv(rehearsal / "results/metrics.csv")
    assert set(metrics.objective) == {"base", "ce", "gem"}
