"""gemsft.model_loading: hub ids resolved offline from a Hugging Face cache (the tiny models saved in
the hub's cache layout under a temporary HF_HOME, HF_HUB_OFFLINE=1) by every stage, and the device,
dtype and attention implementation every stage receives from the config through the one loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_cache import save_in_hub_cache  # noqa: E402
import torch
import yaml

from gemsft import files, model_loading
from gemsft.chat_format import load_tokenizer
from gemsft.config import validate_config
from gemsft.evaluate import forgetting, model_eval
from gemsft.evaluate.model_stats import entropy_from_file, next_token_distribution, parameter_distance
from gemsft.model_loading import dtype_name, lm_eval_model_args, loading_settings, resolve_model
from gemsft.sample.generate import generate_requests
from gemsft.sample.plan import SamplingRequest, SamplingSpec
from gemsft.score import reward_model as reward
from gemsft.score.chat_quality import write_chat_quality
from gemsft.train import sft

from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE_ID, RM_ID, TEMPLATE_ID = "gemsft-test/tiny-llama", "gemsft-test/tiny-rm", "gemsft-test/template-only"
REVISION = "0123456789abcdef0123456789abcdef01234567"
PROMPTS = [{"id": "p0", "prompt": "Name a red fruit."}, {"id": "p1", "prompt": "Greet Anna."}]
CONVERSATIONS = [{"id": "c0", "messages": [{"role": "user", "content": "Name a red fruit."},
                                           {"role": "assistant", "content": "Cherry."}]},
                 {"id": "c1", "messages": [{"role": "user", "content": "Greet Anna."},
                                           {"role": "assistant", "content": "Hello, Anna!"}]}]


@pytest.fixture(scope="module")
def reward_dir(base_dir, tmp_path_factory):
    """The tiny base with a (random) one-output reward head, saved as a reward model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("rm")
    AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=1).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_home(base_dir, reward_dir, tokenizer, tmp_path_factory) -> Path:
    """HF_HOME with the tiny base model, the reward model and a tokenizer-only repo in its hub cache."""
    home = tmp_path_factory.mktemp("hf_home")
    save_in_hub_cache(base_dir, home / "hub", BASE_ID, REVISION)
    save_in_hub_cache(reward_dir, home / "hub", RM_ID, REVISION)
    template = tmp_path_factory.mktemp("template")
    tokenizer.save_pretrained(template)
    save_in_hub_cache(template, home / "hub", TEMPLATE_ID, REVISION)
    return home


@pytest.fixture(autouse=True)
def offline_hub(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def snapshot(repo_id: str, hf_home: Path) -> Path:
    return hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / REVISION


@pytest.fixture
def sft_test(tmp_path) -> Path:
    path = tmp_path / "sft_test.jsonl"
    files.write_jsonl(path, CONVERSATIONS)
    return path


@pytest.fixture
def knowledge_task(tmp_path) -> tuple[str, Path]:
    data = tmp_path / "probes.jsonl"
    files.write_jsonl(data, [{"id": f"k{i}", "question": f"Greet {name}?", "choices": ["Hello.", "Cherry."],
                              "gold": 0} for i, name in enumerate(["Anna", "Bo"])])
    return forgetting.write_world_knowledge_task(data, tmp_path / "tasks"), tmp_path / "tasks"


# --------------------------------------------------------------------------- resolution


def test_resolve_model_finds_the_cached_snapshot_offline(hf_home, base_dir):
    assert resolve_model(BASE_ID) == snapshot(BASE_ID, hf_home)
    assert resolve_model(base_dir) == base_dir  # a local directory is used as is
    assert resolve_model(TEMPLATE_ID, tokenizer_only=True) == snapshot(TEMPLATE_ID, hf_home)


def one_line_error(call) -> str:
    with pytest.raises(FileNotFoundError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_missing_hub_id_is_a_one_line_error_naming_the_id_and_hf_home(hf_home, tmp_path):
    message = one_line_error(lambda: resolve_model("gemsft-test/not-cached"))
    assert message.startswith("gemsft-test/not-cached: not a local directory")
    assert f"HF_HOME={hf_home}" in message and "HF_HUB_OFFLINE" in message
    # A stage reports the same line (here lm-eval's, before it imports the harness).
    assert one_line_error(lambda: forgetting.evaluate_tasks("gemsft-test/not-cached", ["t"], None,
                                                             tmp_path / "out.json")) == message
    # A repo cached with its tokenizer only serves a chat template, not a model.
    assert "its weights are not in the Hugging Face cache" in one_line_error(lambda: resolve_model(TEMPLATE_ID))
    assert one_line_error(lambda: resolve_model(tmp_path / "gone")) == f"{tmp_path / 'gone'}: model directory not found"


# --------------------------------------------------------------------------- every stage loads a hub id


def test_every_stage_loads_the_base_model_by_hub_id(hf_home, base_dir, reward_dir, sft_test, knowledge_task,
                                                    tmp_path, monkeypatch):
    # Training: the base model and its tokenizer, with the template of a tokenizer-only repo.
    model = sft.load_model(BASE_ID, {"bf16": False})
    local = sft.load_model(base_dir, {"bf16": False})
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), local.state_dict().values()))
    assert load_tokenizer(BASE_ID, chat_template_from=TEMPLATE_ID).chat_template

    # Sampling (hf backend): the same rows as from the local directory.
    request = SamplingRequest(PROMPTS, SamplingSpec(n=2, max_tokens=6), "chat")
    assert generate_requests(BASE_ID, [request], backend="hf") == generate_requests(base_dir, [request], backend="hf")

    # Reward scoring.
    rm, rm_tokenizer = reward.load_reward_model(RM_ID)
    local_rm, _ = reward.load_reward_model(reward_dir)
    args = (["Name a red fruit."], ["Cherry."])
    assert reward.score(rm, rm_tokenizer, *args) == pytest.approx(reward.score(local_rm, rm_tokenizer, *args))

    # Entropy, the parameter distance (the hub copy is the local base, so 0), the next token.
    entropy = entropy_from_file(BASE_ID, sft_test)["entropy"]
    assert entropy == pytest.approx(entropy_from_file(base_dir, sft_test)["entropy"])
    assert parameter_distance(BASE_ID, base_dir)["l2"] == 0.0
    assert next_token_distribution(BASE_ID, "Greet Anna.", "Hello")["probs"] == pytest.approx(
        next_token_distribution(base_dir, "Greet Anna.", "Hello")["probs"])

    # lm-eval: the harness is handed the resolved snapshot, never the hub id.
    task, task_dir = knowledge_task
    scores = forgetting.evaluate_tasks(BASE_ID, [task], task_dir, tmp_path / "lm_eval.json", limit=2)
    saved = files.read_json(tmp_path / "lm_eval.json")["gemsft"]
    assert saved["model_args"]["pretrained"] == str(snapshot(BASE_ID, hf_home).resolve())
    assert scores[task]["n"] == 2


# --------------------------------------------------------------------------- device and dtype


def config_with(**model_settings) -> dict:
    """config/config.yaml with the given model and reward_model settings, validated as the rules do."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["model"].update(model_settings)
    config["reward_model"].update(model_settings)
    validate_config(config, str(REPO / "config/schema/config.schema.yaml"))
    return config


@pytest.fixture
def loads(monkeypatch) -> list[dict]:
    """What every model load of the loader produced: its class, device, dtype and attention."""
    seen = []
    real = model_loading._load

    def spy(auto_class, name_or_path, settings, device, dtype, kwargs):
        loaded = real(auto_class, name_or_path, settings, device, dtype, kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        seen.append({"class": auto_class, "device": model.device.type, "dtype": model.dtype,
                     "attn": model.config._attn_implementation})
        return loaded

    monkeypatch.setattr(model_loading, "_load", spy)
    return seen


def test_every_stage_gets_its_device_and_dtype_from_the_config_through_the_one_loader(
        base_dir, sft_test, knowledge_task, loads, tmp_path, monkeypatch):
    config = config_with(dtype="bfloat16", attn_implementation="eager")
    model_settings, rm_settings = loading_settings(config["model"]), loading_settings(config["reward_model"])
    configured = {"device": "cpu", "dtype": torch.bfloat16, "attn": "eager"}

    def took(stage_class, **expected):
        assert loads, "the stage loaded no model through gemsft.model_loading"
        assert loads == [{"class": stage_class, **configured, **expected}] * len(loads)
        loads.clear()

    # Training keeps train.bf16's dtype (the Trainer places the model: on a CPU it stays there).
    sft.load_model(BASE_ID, {"bf16": False}, model_settings)
    took("AutoModelForCausalLM", dtype=torch.float32)
    sft.load_model(BASE_ID, {"bf16": True}, model_settings)
    took("AutoModelForCausalLM")

    request = SamplingRequest(PROMPTS, SamplingSpec(n=2, max_tokens=4), "chat")
    [rows] = generate_requests(BASE_ID, [request], backend="hf", loading=model_settings)
    assert len(rows) == 4
    took("AutoModelForCausalLM")

    records = [{"id": p["id"], "prompt": p["prompt"], "reference": "Cherry."} for p in PROMPTS]
    samples = [{"prompt_id": p["id"], "sample_index": 0, "text": "Hello."} for p in PROMPTS]
    write_chat_quality(records, samples, RM_ID, tmp_path / "scores.jsonl", tmp_path / "chat_quality.json",
                       {"model": "tiny"}, config, [1], batch_size=4, max_length=64, loading=rm_settings)
    assert len(files.read_jsonl(tmp_path / "scores.jsonl")) == 4
    took("AutoModelForSequenceClassification")

    # Entropy in the configured dtype; the distance reads the checkpoint's own (float32) weights.
    entropy_from_file(BASE_ID, sft_test, loading=model_settings)
    took("AutoModelForCausalLM")
    assert parameter_distance(BASE_ID, base_dir, model_settings)["l2"] == 0.0
    took("AutoModelForCausalLM", dtype=torch.float32)
    model_eval.world_next_token(BASE_ID, _eval_chat(tmp_path), "greet", model_settings)
    took("AutoModelForCausalLM")

    # lm-eval loads the model itself: the loader hands it the device, dtype and attention.
    calls = []
    monkeypatch.setattr("lm_eval.simple_evaluate", lambda **kwargs: calls.append(kwargs))
    task, task_dir = knowledge_task
    forgetting.evaluate_tasks(BASE_ID, [task], task_dir, tmp_path / "lm_eval.json", loading=model_settings)
    [call] = calls
    assert call["device"] == "cpu"
    assert {k: call["model_args"][k] for k in ("dtype", "attn_implementation")} == {
        "dtype": "bfloat16", "attn_implementation": "eager"}


def _eval_chat(tmp_path: Path) -> Path:
    path = tmp_path / "eval_chat.jsonl"
    files.write_jsonl(path, [{"id": "g0", "kind": "greet", "prompt": "Greet Anna.", "reference": "Hello, Anna!",
                              "acceptable": ["Anna"], "p": {"Anna": 1.0}}])
    return path


def test_the_defaults_on_a_cpu_are_what_the_stages_loaded_before(base_dir, loads):
    """dtype auto and no attention implementation: float32 and transformers' default attention, as
    a plain from_pretrained gives (the embedded tier's results stay the same)."""
    from transformers import AutoModelForCausalLM

    settings = loading_settings(config_with()["model"])
    assert settings == {"dtype": "auto", "attn_implementation": None}
    plain = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = model_loading.load_causal_lm(base_dir, settings)
    assert loads == [{"class": "AutoModelForCausalLM", "device": "cpu", "dtype": torch.float32,
                      "attn": plain.config._attn_implementation}]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), plain.state_dict().values()))


def test_on_a_gpu_auto_is_bf16_for_every_stage_lm_eval_included(base_dir, monkeypatch):
    assert dtype_name("auto", "cuda") == "bfloat16" and dtype_name("auto", "cpu") == "float32"
    assert dtype_name("float16", "cuda") == "float16" and dtype_name(None, "cpu") == "float32"
    with pytest.raises(ValueError, match="dtype: unknown value 'bf16'"):
        dtype_name("bf16", "cpu")
    monkeypatch.setattr(model_loading, "stage_device", lambda: "cuda")
    args, device = lm_eval_model_args(base_dir, loading_settings({"attn_implementation": "sdpa"}))
    assert device == "cuda" and args == {"pretrained": str(base_dir.resolve()), "dtype": "bfloat16",
                                         "attn_implementation": "sdpa"}


def test_the_paper_config_loads_in_bf16_on_a_gpu_with_sdpa_attention():
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    config = config_with()
    for section in ("model", "reward_model"):
        config[section].update(paper[section])
        assert loading_settings(config[section]) == {"dtype": "auto", "attn_implementation": "sdpa"}
    validate_config(config, str(REPO / "config/schema/config.schema.yaml"))
    with pytest.raises(ValueError, match=r"invalid config at '(reward_)?model.attn_implementation': 'flash' is not"):
        config_with(attn_implementation="flash")
