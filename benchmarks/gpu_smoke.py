"""The paper tier's GPU stages end to end on one GPU in under 10 minutes, through the pipeline's own
functions (issue 19). Run it as `bash benchmarks/gpu_smoke.sh` when a GPU is lent; on a CPU,
`bash benchmarks/gpu_smoke.sh --dry` runs the same stages with tiny shapes (the test suite does).

What the full form does, one process per stage as the pipeline's jobs are (each stage's wall time
includes its imports and model loads, as a job's would):

  setup     a Llama-3.2-1B-shaped LlamaForCausalLM with random weights (benchmarks/train_throughput.py's
            GPU_SHAPE: vocabulary 128,256, hidden 2048, 16 layers, tied head) in bf16, with the rehearsal
            tokenizer (tests/llama31_tokenizer.py: Llama-3.1's special tokens and chat template, a
            byte-level BPE trained here on GSM8K questions from the data mirror; 8,192 tokens, so the
            model's embedding is larger than the tokenizer, as the issue allows: the point is the 128k
            shapes of the fused loss and of sampling). A sequence-classification reward model (the
            same weights, a random one-output `score` head). SFT data, sampling prompts, and the six
            leaderboard tasks cut to `leaderboard_limit: 20` (gemsft.data.leaderboard, from the mirror).
  train_ce  gemsft.train.launch.run("finetune", ...) as the train rule calls it, with config/paper.yaml's
            train section (ZeRO-2 from config/deepspeed/zero2.json, bf16, gradient checkpointing,
            max_length 2048, cosine schedule, adam_beta2 0.95, per-device batch 4) and the smoke's
            overrides: 12 steps, 2 accumulation steps, learning rate 5e-4, logging every step, no
            checkpoints. In the stage's own process, as the train rule runs a one-GPU job (launch.run
            gives DeepSpeed its process group of one there).
  train_gem the same for GEM (beta 0.7, the fused loss: train.fused_loss true, since auto runs GEM on
            logits on a GPU until measured not slower), with a checkpoint every 6 steps, kept for the resume.
  resume_gem a new process (a restarted job) whose checkpoint directory holds only GEM's checkpoint-6:
            run_training resumes from it (last_complete_checkpoint) and trains steps 7-12, whose
            loss, CE, grad norm and learning rate must match the uninterrupted run's.
  sample    gemsft.sample.generate.generate_requests on the GEM model, vLLM on CUDA, the paper's
            sampling (temperature 0.6, top-k 50, top-p 0.9, seed 42): 32 held-out prompts x 4 samples,
            at most 64 new tokens; at least 90% must end with finish_reason "stop".
  reward    gemsft.score.reward_model.load_reward_model + score on the samples, reward_model section of
            config/paper.yaml (dtype auto: bf16 on cuda).
  evaluate  gemsft.evaluate.model_eval.evaluate_model on the GEM model: lm-eval on the six leaderboard
            tasks (20 documents each, per MMLU subject), entropy and perplexity on held-out SFT
            conversations, the parameter distance from the base model.

Why 90% of samples can stop: random weights never emit <|eot_id|> on purpose; the 12 training steps
teach it. Every SFT conversation is about 2048 tokens of user turns (GSM8K questions, three a turn),
each answered with a single digit, so the supervised tokens (assistant turns only, as always) are a
digit and <|eot_id|>: the model learns that a reply is one token and then ends its turn. The paper's
learning rate of 2e-5 moves random weights too little in 12 steps; 5e-4 teaches it. On a CPU proxy
with the full width and vocabulary (hidden 2048, vocabulary 128,256, 4 layers, sequence 256), 12
steps at 3e-4 and at 5e-4 both gave 100% of 32 samples stopping after two tokens (the CE falls from 12
to about 3, not monotonically: random weights at these rates spike once or twice). In --dry, the
64-wide model needs a proportionally larger rate (2e-2). Nothing else about the model or the sampler
is changed, so the stop fraction measures what training taught. The supervised tokens are a few
percent of each sequence, so the fused loss runs on few rows here; its cost at full N is what
benchmarks/train_throughput.py (gpu_check.sh) measures. What the smoke checks of it is that GEM took
the fused path under ZeRO-2: its peak memory is below CE's, whose N x V logits are materialised.

Checks (each printed PASS/FAIL, all in the JSON summary): the device and dtype each stage ran on
(cuda and bf16 on a GPU; cpu and float32 in --dry), DeepSpeed's engine at ZeRO stage 2 with its
checkpoint files, finite losses and grad norms, the CE falling, the fused GEM run's peak memory below
CE's, the resumed curve, the stop fraction, finite rewards and evaluation numbers, the six tasks at
the limit, and each stage's and the whole run's time against its budget (600 s in all on one H100).
A stage that fails is reported and the stages that do not need its output still run, so one GPU run
says as much as it can. Exit code 0 only if every check passed.

--dry: the same stages and checks on a CPU with tiny shapes (benchmarks/train_throughput.py's
SMOKE_SHAPE, head_dim 64 for vLLM's CPU backend; sequence 256; 2 documents per leaderboard task;
float32 throughout, which is what `dtype: auto` and `bf16: false` give on a CPU). DeepSpeed runs there
too (ZeRO-2 on gloo); where it does not import, the train stages run without it and say so. The memory
comparison, which needs CUDA's allocator, is not made on a CPU.

Outputs: the JSON summary (`--out`, by the wrapper `$OUT/gpu_smoke.json`, else benchmarks/results/),
written after every stage, so a run cut short still leaves what it measured. Models and checkpoints go
to a scratch directory (`--work`, default a temporary one, deleted at the end unless --keep); the full
form needs about 30 GB of disk there at its peak (one ZeRO-2 checkpoint of the 1.2B model, about
20 GB, and four models; see stage_train for how one checkpoint at a time is kept).

The data mirror (GEMSFT_DATA_MIRROR, else ../shared/data or shared/data beside benchmarks/) must hold
gsm8k/ and the six leaderboard tasks' files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The SFT data's assistant replies: one digit each, a single token of any byte-level BPE (see the
# module docstring).
REPLIES = tuple("0123456789")
SEED = 1234  # config/paper.yaml's train.seeds
GEM_BETA = 0.7

# Per mode: shapes, sizes and time budgets (seconds, each stage's process start included).
PLANS = {
    "full": {
        "model_shape": "GPU_SHAPE", "max_position_embeddings": 4096, "tokenizer_vocab": 8192,
        "tokenizer_rows": None, "seq_len": 2048, "questions_per_turn": 3, "batch": 4, "grad_accum": 2,
        "steps": 12, "save_every": 6, "learning_rate": 5e-4, "sft_test": 8, "sample_prompts": 32,
        "samples_per_prompt": 4, "max_tokens": 64, "leaderboard_limit": 20,
        "stop_fraction_min": 0.9, "resume_rtol": 0.02, "resume_atol": 1e-3,
        "budgets": {"setup": 60, "train_ce": 75, "train_gem": 100, "resume_gem": 100, "sample": 120,
                    "reward": 40, "evaluate": 150, "total": 600},
    },
    "dry": {
        "model_shape": "SMOKE_SHAPE", "max_position_embeddings": 1024, "tokenizer_vocab": 1024,
        "tokenizer_rows": 600, "seq_len": 256, "questions_per_turn": 1, "batch": 2, "grad_accum": 2,
        "steps": 12, "save_every": 6, "learning_rate": 2e-2, "sft_test": 4, "sample_prompts": 8,
        "samples_per_prompt": 4, "max_tokens": 32, "leaderboard_limit": 2,
        "stop_fraction_min": 0.9, "resume_rtol": 1e-4, "resume_atol": 1e-6,
        # The first DeepSpeed run on a CPU compiles its shared-memory op (about 60 s, once per
        # TORCH_EXTENSIONS_DIR), hence train_ce's budget.
        "budgets": {"setup": 60, "train_ce": 150, "train_gem": 90, "resume_gem": 90, "sample": 120,
                    "reward": 45, "evaluate": 90, "total": 600},
    },
}

# stage -> (the stages whose outputs it needs)
STAGES = {
    "setup": (),
    "train_ce": ("setup",),
    "train_gem": ("setup",),
    "resume_gem": ("train_gem",),
    "sample": ("train_gem",),
    "reward": ("sample",),
    "evaluate": ("train_gem",),
}


# =========================================================================== helpers (no torch)

def _now() -> float:
    return time.perf_counter()


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def safetensors_dtypes(model_dir: Path) -> list[str]:
    """The dtypes of the tensors in a model directory's safetensors files, read from their headers."""
    names = {"BF16": "bfloat16", "F32": "float32", "F16": "float16"}
    found = set()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        found.update(names.get(v["dtype"], v["dtype"]) for k, v in header.items() if k != "__metadata__")
    return sorted(found)


def mirror_root() -> Path | None:
    for candidate in (os.environ.get("GEMSFT_DATA_MIRROR"), REPO.parent / "shared" / "data", REPO / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate).resolve()
    return None


def paper_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "paper.yaml").read_text())


# =========================================================================== stages (own processes)

def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _importable(name: str) -> tuple[bool, str]:
    try:
        module = __import__(name)
    except Exception as err:  # noqa: BLE001 - a broken install raises anything
        return False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return True, getattr(module, "__version__", "?")


def _conversation(rng, questions: list[str], tokenizer, length: int, per_turn: int) -> list[dict]:
    """User turns of `per_turn` questions, each answered with one digit, up to `length` tokens (at
    least one turn)."""
    from gemsft.chat_format import assistant_turn, render_ids, user_turn

    messages: list[dict] = []
    while True:
        question = " ".join(rng.choice(questions) for _ in range(per_turn))
        turn = [user_turn(question), assistant_turn(rng.choice(REPLIES))]
        if messages and len(render_ids(tokenizer, messages + turn)) > length:
            return messages
        messages += turn


def stage_setup(work: Path, plan: dict) -> dict:
    import random

    import torch
    from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForCausalLM

    import train_throughput
    from gemsft import files
    from gemsft.chat_format import end_of_turn_id, render_ids
    from gemsft.data.leaderboard import write_leaderboard_tasks
    from llama31_tokenizer import EOT, llama31_tokenizer

    device = _device()
    facts: dict = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
                   "gpu": torch.cuda.get_device_name() if device == "cuda" else None}
    facts["packages"] = {name: _importable(name) for name in ("deepspeed", "vllm", "lm_eval")}
    import transformers

    facts["transformers"] = transformers.__version__
    mirror = mirror_root()
    if mirror is None:
        raise FileNotFoundError("no data mirror: set GEMSFT_DATA_MIRROR (it needs gsm8k/ and the six leaderboard "
                                "tasks' files), or place it at ../shared/data or shared/data")
    facts["mirror"] = str(mirror)

    # Tokenizer: Llama-3.1's special tokens and chat template, a BPE trained on GSM8K.
    train_rows = files.read_jsonl(mirror / "gsm8k" / "train.jsonl")
    corpus_rows = train_rows[: plan["tokenizer_rows"]] if plan["tokenizer_rows"] else train_rows
    corpus = [r["question"] for r in corpus_rows] + [r["answer"] for r in corpus_rows]
    tokenizer = llama31_tokenizer(corpus, vocab_size=plan["tokenizer_vocab"])
    eot = tokenizer.convert_tokens_to_ids(EOT)
    if end_of_turn_id(tokenizer) != eot:
        raise RuntimeError("the rehearsal tokenizer's template does not end a turn with <|eot_id|>")

    # SFT data: exactly steps x batch x accumulation conversations of about seq_len tokens.
    rng = random.Random(SEED)
    questions = [r["question"] for r in corpus_rows]
    n_train = plan["steps"] * plan["batch"] * plan["grad_accum"]
    train = [{"id": f"train-{i}", "messages": _conversation(rng, questions, tokenizer, plan["seq_len"],
                                                             plan["questions_per_turn"])} for i in range(n_train)]
    test = [{"id": f"test-{i}", "messages": _conversation(rng, questions, tokenizer, plan["seq_len"] // 2, 1)}
            for i in range(plan["sft_test"])]
    held_out = files.read_jsonl(mirror / "gsm8k" / "test.jsonl")[: plan["sample_prompts"]]
    prompts = [{"id": f"gsm8k-test-{i}", "prompt": r["question"]} for i, r in enumerate(held_out)]
    data = work / "data"
    lengths = [len(render_ids(tokenizer, row["messages"])) for row in train]
    files.write_jsonl(data / "sft_train.jsonl", train)
    files.write_jsonl(data / "sft_test.jsonl", test)
    files.write_jsonl(data / "prompts.jsonl", prompts)

    # Base model: random weights in the shape of the plan, saved as a hub model would be.
    shape = plan["model_shape"]  # a shape, or the name of one in benchmarks/train_throughput.py
    shape = dict(shape if isinstance(shape, dict) else getattr(train_throughput, shape))
    if shape["vocab_size"] < len(tokenizer):
        raise RuntimeError(f"model vocabulary {shape['vocab_size']} < tokenizer's {len(tokenizer)}")
    config = LlamaConfig(**shape, max_position_embeddings=plan["max_position_embeddings"],
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(SEED)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    facts["parameters"] = sum(p.numel() for p in model.parameters())
    base = work / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    del model
    # Reward model: the same weights as a one-output sequence classifier (random `score` head).
    reward = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
    reward.config.pad_token_id = tokenizer.eos_token_id
    reward.save_pretrained(work / "reward_model")
    tokenizer.save_pretrained(work / "reward_model")
    del reward

    start = _now()
    tasks = write_leaderboard_tasks(work / "leaderboard_tasks", mirror, limit=plan["leaderboard_limit"])
    facts.update(leaderboard_tasks=tasks, leaderboard_write_s=_now() - start, tokenizer_len=len(tokenizer),
                 model_vocab=shape["vocab_size"], eot_id=eot, sft_train=len(train), sft_test=len(test),
                 sft_tokens=[min(lengths), max(lengths)], sft_mean_tokens=sum(lengths) / len(lengths),
                 prompts=len(prompts), saved_dtypes=safetensors_dtypes(base))
    return facts


def _train_cfg(plan: dict, deepspeed: bool, checkpoints: str | None, device: str) -> dict:
    """config/paper.yaml's train section with the smoke's overrides. `checkpoints`: None (none),
    "keep" (every save_every steps, left in place when the run ends: the resume starts from them) or
    "paper" (every save_every steps, config/paper.yaml's save_total_limit and keep_checkpoints)."""
    cfg = dict(paper_config()["train"])
    cfg.update(max_steps=plan["steps"], per_device_batch_size=plan["batch"],
               gradient_accumulation_steps=plan["grad_accum"], learning_rate=plan["learning_rate"],
               max_length=plan["seq_len"], logging_steps=1, bf16=device == "cuda",
               deepspeed=cfg.get("deepspeed") if deepspeed else None)
    if checkpoints == "keep":
        cfg.update(save_steps=plan["save_every"], keep_checkpoints=True)
    elif checkpoints == "paper":
        cfg.update(save_steps=plan["save_every"])
    else:
        cfg.update(save_steps=10 ** 9, keep_checkpoints=False)
    return cfg


def _training_observer(final_save: bool, drop_after_first_step: Path | None):
    """A TrainerCallback, added to transformers' default callbacks so that the pipeline's own
    `finetune` builds its Trainer unchanged. It records per-step wall times, and at the start of
    training the device and dtype of the trained weights, the Trainer's settings and the DeepSpeed
    engine's (read, not changed). It changes nothing about training, only what is written to disk:
    without `final_save`, the Trainer's checkpoint at the last step is not written (the model is
    saved by `finetune` all the same); `drop_after_first_step` is deleted once the first step has run,
    by which time the Trainer has restored everything from it. A ZeRO-2 checkpoint of the 1.2B model
    is about 20 GB (bf16 weights twice, fp32 master weights and Adam's two moments), so this keeps
    one on disk at a time."""
    import gc
    import warnings

    import torch
    from transformers import TrainerCallback

    class Observer(TrainerCallback):
        def __init__(self):
            self.facts: dict = {"step_seconds": [], "final_checkpoint_written": final_save}
            self._start = None

        def _sync(self):
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            params = list(model.parameters())
            self.facts.update(param_device=str(params[0].device), param_dtypes=sorted({str(p.dtype) for p in params}),
                              args_bf16=bool(args.bf16), gradient_checkpointing=bool(args.gradient_checkpointing),
                              start_step=state.global_step)
            try:
                from deepspeed import DeepSpeedEngine
            except Exception:  # noqa: BLE001
                return
            with warnings.catch_warnings():  # isinstance() on every live object touches deprecated attributes
                warnings.simplefilter("ignore")
                engines = [o for o in gc.get_objects() if isinstance(o, DeepSpeedEngine)]
            if engines:
                engine = engines[-1]
                optimizer = getattr(engine, "optimizer", None)
                self.facts["deepspeed"] = {
                    "zero_stage": engine.zero_optimization_stage(), "bf16": bool(engine.bfloat16_enabled()),
                    "device": str(engine.device), "world_size": engine.world_size,
                    "optimizer": type(optimizer).__name__, "zero": getattr(optimizer, "zero_stage_string", None)}

        def on_step_begin(self, args, state, control, **kwargs):
            self._sync()
            self._start = _now()

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            seconds = _now() - self._start
            self.facts["step_seconds"].append(seconds)
            print(f"  step {state.global_step:>3}: {seconds:6.2f} s", flush=True)
            if drop_after_first_step is not None and state.global_step == self.facts["start_step"] + 1:
                shutil.rmtree(drop_after_first_step)
            if not final_save and state.global_step >= state.max_steps:
                control.should_save = False  # runs after DefaultFlowCallback, which asked for it
            return control

    return Observer()


TRAIN_RUNS = {"train_ce": "ce", "train_gem": "gem", "resume_gem": "gem_resumed"}


def stage_train(work: Path, plan: dict, run: str) -> dict:
    """One fine-tuning run through gemsft.train.launch.run, as the train rule makes it.

    ce: no checkpoints. gem: a checkpoint every save_every steps, kept (keep_checkpoints) for the
    resume; not the one at the last step (disk). gem_resumed: a restarted job whose checkpoint
    directory holds gem's checkpoint-<save_every>, with config/paper.yaml's checkpointing
    (save_total_limit 1, keep_checkpoints false), so the last step's checkpoint is written and then
    removed with the directory once the model is saved."""
    import torch
    from transformers import trainer as hf_trainer

    from gemsft.model_loading import loading_settings
    from gemsft.train.launch import run as launch_run

    device = _device()
    deepspeed_ok, deepspeed_version = _importable("deepspeed")
    objective, checkpoints, resume = {"ce": ("ce", None, False), "gem": ("gem", "keep", False),
                                      "gem_resumed": ("gem", "paper", True)}[run]
    out = work / "runs" / run
    checkpoint_dir = out / "checkpoints"
    dropped = None
    if resume:
        source = work / "runs" / "gem" / "checkpoints" / f"checkpoint-{plan['save_every']}"
        if not (source / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{source}: no complete checkpoint to resume from")
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        dropped = checkpoint_dir / source.name
        shutil.move(str(source), dropped)
        shutil.rmtree(source.parent)
    observer = _training_observer(final_save=resume, drop_after_first_step=dropped)
    hf_trainer.DEFAULT_CALLBACKS.append(observer)  # every Trainer built in this process reports to it
    cfg = _train_cfg(plan, deepspeed_ok, checkpoints, device)
    cfg["fused_loss"] = objective == "gem"  # the smoke checks the fused path, which auto leaves off on a GPU
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = _now()
    launch_run("finetune", dict(
        base_dir=str(work / "base"), data_path=str(work / "data" / "sft_train.jsonl"), out_dir=str(out / "model"),
        checkpoint_dir=str(checkpoint_dir), metrics_path=str(out / "train_metrics.json"),
        objective_name=objective, beta=GEM_BETA if objective == "gem" else None, seed=SEED, cfg=cfg,
        loading=loading_settings(paper_config()["model"])), processes=1)
    seconds = _now() - start
    metrics = json.loads((out / "train_metrics.json").read_text())
    facts = dict(observer.facts)
    facts.update(device=device, train_seconds=seconds, deepspeed_config=cfg["deepspeed"],
                 deepspeed_importable=deepspeed_ok, deepspeed_version=deepspeed_version,
                 # As launch.run left them: a process group of one for DeepSpeed.
                 process_group_env={k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")},
                 peak_memory_gib=torch.cuda.max_memory_allocated() / 2 ** 30 if device == "cuda" else None,
                 saved_dtypes=safetensors_dtypes(out / "model"), resumed_from=metrics["resumed_from"],
                 global_steps=metrics["global_steps"], finite=metrics["finite"],
                 history=[{k: e[k] for k in ("step", "loss", "ce", "entropy", "grad_norm", "learning_rate") if k in e}
                          for e in metrics["log_history"] if "loss" in e])
    if checkpoints == "keep":
        facts["checkpoints"] = {d.name: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
                                for d in sorted(checkpoint_dir.glob("checkpoint-*"))}
    facts["checkpoint_dir_left"] = checkpoint_dir.exists()
    if run != "gem":  # only the GEM model is sampled and evaluated: free the disk
        shutil.rmtree(out / "model")
    return facts


def stage_sample(work: Path, plan: dict) -> dict:
    from gemsft import files
    from gemsft.model_loading import dtype_name, loading_settings
    from gemsft.sample.generate import generate_requests, resolve_backend
    from gemsft.sample.plan import SamplingRequest, SamplingSpec

    device = _device()
    model_dir = work / "runs" / "gem" / "model"
    backend = resolve_backend("auto", model_dir)  # vLLM where it imports and serves the model
    facts = {"device": device, "backend": backend}
    if backend == "vllm":
        from vllm.platforms import current_platform

        facts["vllm_device"] = current_platform.device_type
    paper = paper_config()
    loading = loading_settings(paper["model"])
    facts["dtype"] = dtype_name(loading["dtype"], device)
    sampling = paper["sampling"]
    spec = SamplingSpec(n=plan["samples_per_prompt"], temperature=sampling["temperature"], top_k=sampling["top_k"],
                        top_p=sampling["top_p"], max_tokens=plan["max_tokens"], seed=sampling["seed"])
    prompts = files.read_jsonl(work / "data" / "prompts.jsonl")
    start = _now()
    rows = generate_requests(model_dir, [SamplingRequest(prompts, spec, "chat")], backend=backend,
                             gpus=1 if device == "cuda" else 0, loading=loading)[0]
    facts["sampling_seconds"] = _now() - start
    files.write_jsonl(work / "samples.jsonl", rows)
    stops = sum(r["finish_reason"] == "stop" for r in rows)
    facts.update(samples=len(rows), expected=len(prompts) * spec.n, stop_fraction=stops / max(1, len(rows)),
                 mean_tokens=sum(r["num_tokens"] for r in rows) / max(1, len(rows)),
                 empty_fraction=sum(not r["text"].strip() for r in rows) / max(1, len(rows)),
                 examples=[r["text"] for r in rows[:8]])
    return facts


def stage_reward(work: Path, plan: dict) -> dict:
    from gemsft import files
    from gemsft.model_loading import loading_settings
    from gemsft.score.reward_model import load_reward_model, score

    section = paper_config()["reward_model"]
    model, tokenizer = load_reward_model(work / "reward_model", loading_settings(section))
    param = next(model.parameters())
    rows = files.read_jsonl(work / "samples.jsonl")
    prompts = {r["id"]: r["prompt"] for r in files.read_jsonl(work / "data" / "prompts.jsonl")}
    start = _now()
    rewards = score(model, tokenizer, [prompts[r["prompt_id"]] for r in rows], [r["text"] for r in rows],
                    max_length=section.get("max_length"), progress=False)
    return {"device": param.device.type, "dtype": str(param.dtype).removeprefix("torch."),
            "architecture": type(model).__name__, "scored": len(rewards), "expected": len(rows),
            "scoring_seconds": _now() - start, "finite": bool(_finite(rewards.tolist())),
            "mean_reward": float(rewards.mean()) if len(rewards) else None}


def stage_evaluate(work: Path, plan: dict) -> dict:
    from types import SimpleNamespace

    from gemsft.evaluate.model_eval import evaluate_model
    from gemsft.model_loading import loading_settings

    config = paper_config()
    config["evaluation"]["leaderboard_limit"] = plan["leaderboard_limit"]
    config["smoke"] = plan
    out = work / "eval"
    outputs = SimpleNamespace(knowledge=str(out / "knowledge.json"), lm_eval=str(out / "lm_eval_results.json"),
                              lm_eval_samples=str(out / "lm_eval_samples.jsonl"),
                              model_stats=str(out / "model_stats.json"))
    run = {"model": "llama-3.2-1b-shape-random", "objective": "gem", "beta": str(GEM_BETA), "seed": SEED}
    start = _now()
    evaluate_model(run, config, str(work / "runs" / "gem" / "model"), str(work / "base"), "real", None,
                   str(work / "leaderboard_tasks"), str(work / "data" / "sft_test.jsonl"), None, None,
                   config["evaluation"].get("lm_eval_batch_size", 16), plan["leaderboard_limit"], outputs,
                   loading=loading_settings(config["model"]))
    lm_eval = json.loads((out / "lm_eval_results.json").read_text())
    knowledge = json.loads((out / "knowledge.json").read_text())
    stats = json.loads((out / "model_stats.json").read_text())
    n_samples = lm_eval.get("n-samples") or {}
    return {"evaluate_seconds": _now() - start, "device": lm_eval["gemsft"]["device"],
            "dtype": lm_eval["gemsft"]["model_args"].get("dtype"), "lm_eval_wall_s": lm_eval["gemsft"]["wall_s"],
            "documents": {t: v.get("effective", v.get("original")) for t, v in n_samples.items()},
            "knowledge": {r["task"]: r["value"] for r in knowledge["rows"]},
            "model_stats": {f"{r['task']}/{r['metric']}": r["value"] for r in stats["rows"]}}


def run_stage(name: str, work: Path) -> None:
    """One stage in this process; its facts go to work/stages/<name>.json."""
    sys.path[:0] = [str(REPO / "workflow"), str(REPO / "benchmarks"), str(REPO / "tests")]
    plan = json.loads((work / "plan.json").read_text())
    functions = {"setup": stage_setup, "sample": stage_sample, "reward": stage_reward, "evaluate": stage_evaluate}
    facts = stage_train(work, plan, TRAIN_RUNS[name]) if name in TRAIN_RUNS else functions[name](work, plan)
    _write_json(work / "stages" / f"{name}.json", facts)


# =========================================================================== checks (no torch)

class Checks:
    def __init__(self):
        self.items: list[dict] = []

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        self.items.append({"name": name, "ok": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.items)


def _expect(cuda: bool) -> tuple[str, str]:
    return ("cuda", "bfloat16") if cuda else ("cpu", "float32")


def check_setup(checks: Checks, f: dict, plan: dict, dry: bool) -> None:
    device, dtype = _expect(not dry)
    checks.add("setup: device", f["device"] == device, f"{f['device']} ({f.get('gpu') or 'no GPU'}), expected {device}")
    checks.add("setup: base model dtype", f["saved_dtypes"] == [dtype], f"saved {f['saved_dtypes']}, expected {dtype}")
    checks.add("setup: model vocabulary beyond the tokenizer's", f["model_vocab"] >= f["tokenizer_len"],
               f"model {f['model_vocab']}, tokenizer {f['tokenizer_len']}, {f['parameters']:,} parameters")
    low, high = f["sft_tokens"]
    checks.add(f"setup: SFT conversations of about {plan['seq_len']} tokens",
               high <= plan["seq_len"] and f["sft_mean_tokens"] >= 0.75 * plan["seq_len"],
               f"{f['sft_train']} conversations of {low} to {high} tokens, {f['sft_mean_tokens']:.0f} on average")
    for name, (ok, version) in f["packages"].items():
        required = not dry or name == "lm_eval"
        checks.add(f"setup: {name} imports", ok or not required, version if ok else f"{version} (required: {required})")


def _curve(facts: dict, key: str) -> list[float]:
    return [e[key] for e in facts["history"] if key in e]


def check_train(checks: Checks, name: str, f: dict, plan: dict, dry: bool, deepspeed_expected: bool) -> None:
    device, dtype = _expect(not dry)
    checks.add(f"{name}: device", f.get("param_device", "").startswith(device),
               f"trained weights on {f.get('param_device')}")
    checks.add(f"{name}: dtype", f.get("param_dtypes") == [f"torch.{dtype}"] and f["saved_dtypes"] == [dtype],
               f"trained weights {f.get('param_dtypes')}, saved {f['saved_dtypes']}, expected {dtype}")
    checks.add(f"{name}: gradient checkpointing", f.get("gradient_checkpointing") is True,
               str(f.get("gradient_checkpointing")))
    ds = f.get("deepspeed")
    if deepspeed_expected:
        ok = bool(ds) and ds["zero_stage"] == 2 and ds["bf16"] == (dtype == "bfloat16") and ds["world_size"] == 1
        checks.add(f"{name}: DeepSpeed ZeRO-2 at world size 1", ok, json.dumps(ds))
    # A resumed run's log history holds the checkpoint's steps too; it trains the rest.
    steps = plan["steps"] - (plan["save_every"] if f.get("resumed_from") else 0)
    checks.add(f"{name}: steps", f["global_steps"] == plan["steps"] and len(f["history"]) == plan["steps"],
               f"global step {f['global_steps']}, {len(f['history'])} logged steps, "
               f"resumed from {f.get('resumed_from')}")
    losses = _curve(f, "loss") + _curve(f, "ce") + _curve(f, "grad_norm")
    checks.add(f"{name}: finite losses and grad norms", f["finite"] and _finite(losses) and bool(losses),
               "loss " + " ".join(f"{v:.4g}" for v in _curve(f, "loss")))
    ce = _curve(f, "ce")
    if not f.get("resumed_from"):
        checks.add(f"{name}: CE falls", len(ce) > 1 and ce[-1] < ce[0],
                   f"CE {ce[0]:.3f} -> {ce[-1]:.3f}" if ce else "no CE")
    seconds = f.get("step_seconds") or []
    checks.add(f"{name}: per-step times recorded", len(seconds) == steps,
               f"{len(seconds)} steps, median {sorted(seconds)[len(seconds) // 2]:.2f} s" if seconds else "none")


def check_checkpoints(checks: Checks, f: dict, plan: dict, deepspeed_expected: bool) -> None:
    every, steps = plan["save_every"], plan["steps"]
    names = sorted(f.get("checkpoints") or {})
    expected = [f"checkpoint-{s}" for s in range(every, steps, every)]  # not the last step's (see stage_train)
    checks.add("train_gem: checkpoints", sorted(names, key=lambda n: int(n.split("-")[1])) == expected,
               f"{names}, expected {expected}")
    if deepspeed_expected:
        for checkpoint, contents in (f.get("checkpoints") or {}).items():
            step = checkpoint.split("-")[1]
            zero = [p for p in contents if p.startswith(f"global_step{step}/") and "zero_pp_rank_0" in p
                    and p.endswith("optim_states.pt")]
            checks.add(f"train_gem: {checkpoint} holds DeepSpeed's ZeRO optimizer states", bool(zero),
                       ", ".join(zero) or "none")


def check_resume(checks: Checks, uninterrupted: dict, resumed: dict, plan: dict) -> None:
    every = plan["save_every"]
    checks.add(f"resume_gem: resumed from the step-{every} checkpoint",
               resumed.get("resumed_from") == f"checkpoint-{every}" and resumed.get("start_step") == every,
               f"resumed_from {resumed.get('resumed_from')}, first step {resumed.get('start_step')}")
    before = {e["step"]: e for e in uninterrupted["history"]}
    after = {e["step"]: e for e in resumed["history"] if e["step"] > resumed.get("start_step", 0)}
    steps = list(range(plan["save_every"] + 1, plan["steps"] + 1))
    worst = {}
    ok = sorted(after) == steps and all(s in before for s in steps)
    # Tolerances relative to each curve's own scale (GEM's loss crosses zero): exact on a CPU, where
    # the run is deterministic; on a GPU bf16 kernels with atomics (attention and embedding backward)
    # let the two runs drift apart slightly. The learning rate follows the schedule exactly.
    tolerances = {"loss": (plan["resume_rtol"], plan["resume_atol"]), "ce": (plan["resume_rtol"], plan["resume_atol"]),
                  "grad_norm": (3 * plan["resume_rtol"], plan["resume_atol"]), "learning_rate": (1e-6, 0.0)}
    for key, (rtol, atol) in tolerances.items():
        scale = max((abs(before[s][key]) for s in steps if key in before.get(s, {})), default=0.0)
        for s in steps:
            a, b = before.get(s, {}).get(key), after.get(s, {}).get(key)
            if a is None or b is None:
                ok = False
                continue
            dev = abs(a - b)
            worst[key] = max(worst.get(key, 0.0), dev)
            ok = ok and dev <= atol + rtol * scale
    checks.add(f"resume_gem: steps {steps[0]}-{steps[-1]} match the uninterrupted run", ok,
               "max |difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    checks.add("resume_gem: checkpoints removed at the end (keep_checkpoints: false)",
               not resumed["checkpoint_dir_left"])


def check_sample(checks: Checks, f: dict, plan: dict, dry: bool) -> None:
    device, dtype = _expect(not dry)
    if dry:
        checks.add("sample: backend", f["backend"] in ("vllm", "hf"),
                   f"{f['backend']} (vLLM's device: {f.get('vllm_device')})")
    else:
        checks.add("sample: vLLM on CUDA", f["backend"] == "vllm" and f.get("vllm_device") == "cuda",
                   f"backend {f['backend']}, vLLM device {f.get('vllm_device')}")
    if f["backend"] == "vllm":
        checks.add("sample: vLLM device", f.get("vllm_device") == device, f"{f.get('vllm_device')}, expected {device}")
    checks.add("sample: dtype", f["dtype"] == dtype, f"{f['dtype']}, expected {dtype}")
    checks.add("sample: every sample returned", f["samples"] == f["expected"], f"{f['samples']} of {f['expected']}")
    checks.add(f"sample: at least {plan['stop_fraction_min']:.0%} end with stop",
               f["stop_fraction"] >= plan["stop_fraction_min"],
               f"{f['stop_fraction']:.1%} stop, {f['mean_tokens']:.1f} tokens on average, "
               f"{f['empty_fraction']:.0%} empty; e.g. {f['examples'][:4]}")


def check_reward(checks: Checks, f: dict, dry: bool) -> None:
    device, dtype = _expect(not dry)
    checks.add("reward: device and dtype", f["device"] == device and f["dtype"] == dtype,
               f"{f['architecture']} on {f['device']} in {f['dtype']}, expected {device}/{dtype}")
    checks.add("reward: every sample scored, finite", f["scored"] == f["expected"] and f["finite"],
               f"{f['scored']} of {f['expected']}, mean reward {f['mean_reward']}")


def check_evaluate(checks: Checks, f: dict, plan: dict, dry: bool) -> None:
    device, dtype = _expect(not dry)
    checks.add("evaluate: lm-eval device and dtype", f["device"] == device and f["dtype"] == dtype,
               f"{f['device']} / {f['dtype']}, expected {device}/{dtype}")
    tasks = {"arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "winogrande", "gsm8k"}
    checks.add("evaluate: the six leaderboard tasks, finite",
               set(f["knowledge"]) == tasks and _finite(f["knowledge"].values()),
               ", ".join(f"{k} {v:.1f}" for k, v in sorted(f["knowledge"].items())))
    limit = plan["leaderboard_limit"]
    counts = list(f["documents"].values())
    checks.add(f"evaluate: {limit} documents per task (per MMLU subject)",
               bool(counts) and all(n == limit for n in counts),
               f"{len(counts)} tasks, documents {sorted(set(counts))}")
    stats = f["model_stats"]
    checks.add("evaluate: entropy, perplexity, distance finite", bool(stats) and _finite(stats.values())
               and stats.get("parameters/l2_distance_from_base", 0) > 0,
               ", ".join(f"{k} {v:.4g}" for k, v in sorted(stats.items())))


# =========================================================================== the orchestrator

def _stage_command(name: str, work: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--work", str(work)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="CPU, tiny shapes: the same stages and checks")
    parser.add_argument("--out", default=None,
                        help="the JSON summary (default: benchmarks/results/gpu_smoke[_dry].json)")
    parser.add_argument("--work", default=None,
                        help="scratch directory for models and checkpoints (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--only", default=None,
                        help="comma-separated stages to run (a stage whose input is not run fails)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a plan entry, e.g. --set learning_rate=2e-3 (the summary records the plan)")
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        run_stage(args.stage, Path(args.work))
        return 0

    mode = "dry" if args.dry else "full"
    plan = dict(PLANS[mode], mode=mode)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in plan:
            parser.error(f"--set {key}: not a plan entry ({', '.join(sorted(PLANS[mode]))})")
        plan[key] = json.loads(value)
    selected = list(STAGES) if args.only is None else args.only.split(",")
    unknown = sorted(set(selected) - set(STAGES))
    if unknown:
        parser.error(f"--only: unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    default_out = REPO / "benchmarks" / "results" / f"gpu_smoke{'_dry' if args.dry else ''}.json"
    out = Path(args.out) if args.out else default_out
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gemsft-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    _write_json(work / "plan.json", plan)
    budgets = plan["budgets"]
    checks = Checks()
    summary: dict = {"mode": mode, "ok": False, "plan": plan, "stages": {}, "checks": checks.items,
                     "timings_s": {}, "work": str(work)}
    began = _now()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"gpu_smoke: stopped by SIGTERM after {_now() - began:.0f} s"))
    print(f"gpu_smoke ({mode}): scratch {work}, summary {out}", flush=True)
    deepspeed_expected = True

    def deadline_left() -> float:  # stop a stage in time to write the summary inside the total budget
        return budgets["total"] - 10 - (_now() - began)

    for name, needs in STAGES.items():
        if name not in selected:
            continue
        missing = [n for n in needs if not summary["stages"].get(n, {}).get("ok")]
        if missing:
            summary["stages"][name] = {"ok": False, "skipped": f"needs {', '.join(missing)}"}
            checks.add(f"{name}: ran", False, f"skipped: needs {', '.join(missing)}")
            continue
        run = TRAIN_RUNS.get(name)
        timeout = max(30.0, min(3 * budgets[name], deadline_left()))
        print(f"\n=== {name} (budget {budgets[name]} s)", flush=True)
        start = _now()
        # Its own process group, so that a timeout (or this process being stopped) also ends what the
        # stage started (vLLM's engine process, lm-eval's workers).
        process = subprocess.Popen(_stage_command(name, work), cwd=REPO, process_group=0)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = "timeout"
        finally:
            if process.poll() is None or code == "timeout":
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        seconds = _now() - start
        summary["timings_s"][name] = round(seconds, 1)
        facts_path = work / "stages" / f"{name}.json"
        facts = json.loads(facts_path.read_text()) if code == 0 and facts_path.is_file() else {}
        ok = code == 0 and bool(facts)
        summary["stages"][name] = {"ok": ok, "seconds": round(seconds, 1), "exit": code, **facts}
        stopped = f" (stopped at its timeout, {timeout:.0f} s)" if code == "timeout" else ""
        checks.add(f"{name}: ran", ok, f"exit {code} after {seconds:.1f} s{stopped}")
        checks.add(f"{name}: within its budget", seconds <= budgets[name], f"{seconds:.1f} s <= {budgets[name]} s")
        if ok:
            try:
                if name == "setup":
                    check_setup(checks, facts, plan, args.dry)
                    deepspeed_expected = facts["packages"]["deepspeed"][0]
                    if not deepspeed_expected:
                        print("DeepSpeed does not import here: training runs without it (ZeRO-2 not exercised)",
                              flush=True)
                    reason = facts["packages"]["deepspeed"][1]
                    summary["deepspeed"] = "on" if deepspeed_expected else f"skipped: {reason}"
                elif run:
                    check_train(checks, name, facts, plan, args.dry, deepspeed_expected)
                    if name == "train_gem":
                        check_checkpoints(checks, facts, plan, deepspeed_expected)
                        ce = summary["stages"].get("train_ce", {})
                        if not args.dry and ce.get("peak_memory_gib") and facts.get("peak_memory_gib"):
                            checks.add("train_gem: fused GEM's peak memory below CE's (no N x V logits)",
                                       facts["peak_memory_gib"] < ce["peak_memory_gib"],
                                       f"{facts['peak_memory_gib']:.1f} GiB vs CE {ce['peak_memory_gib']:.1f} GiB")
                    if name == "resume_gem":
                        check_resume(checks, summary["stages"]["train_gem"], facts, plan)
                elif name == "sample":
                    check_sample(checks, facts, plan, args.dry)
                elif name == "reward":
                    check_reward(checks, facts, args.dry)
                elif name == "evaluate":
                    check_evaluate(checks, facts, plan, args.dry)
            except Exception as err:  # noqa: BLE001 - a check that cannot read its facts is a failure
                checks.add(f"{name}: facts readable", False, f"{type(err).__name__}: {err}")
        summary["timings_s"]["total"] = round(_now() - began, 1)
        _write_json(out, summary)

    total = _now() - began
    checks.add("total: within budget", total <= budgets["total"], f"{total:.1f} s <= {budgets['total']} s")
    stages = summary["stages"]
    summary.update(
        ok=checks.ok, timings_s={**summary["timings_s"], "total": round(total, 1)},
        devices={n: s.get("param_device") or s.get("vllm_device") or s.get("device") for n, s in stages.items()},
        dtypes={n: s.get("param_dtypes") or s.get("dtype") or s.get("saved_dtypes") for n, s in stages.items()},
        losses={n: [e.get("loss") for e in stages[n].get("history", [])] for n in TRAIN_RUNS if n in stages},
        ce={n: [e.get("ce") for e in stages[n].get("history", [])] for n in TRAIN_RUNS if n in stages},
        step_seconds={n: [round(s, 3) for s in stages[n].get("step_seconds", [])] for n in TRAIN_RUNS if n in stages},
        stop_fraction=stages.get("sample", {}).get("stop_fraction"))
    _write_json(out, summary)
    failed = [c["name"] for c in checks.items if not c["ok"]]
    shown = ("mode", "ok", "devices", "dtypes", "losses", "stop_fraction", "timings_s")
    print(json.dumps({k: summary[k] for k in shown}, default=str))
    print(f"gpu_smoke ({mode}): {'OK' if not failed else 'FAILED'}: {len(checks.items) - len(failed)} of "
          f"{len(checks.items)} checks passed in {total:.0f} s" + (f"; failed: {', '.join(failed)}" if failed else ""),
          flush=True)
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
