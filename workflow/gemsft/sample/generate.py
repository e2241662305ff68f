"""Sampling responses from a model: n samples per prompt through vLLM or transformers.

The paper samples with temperature 0.6, top-k 50, top-p 0.9 and seed 42 (:class:`SamplingSpec`'s
defaults). Two backends give the same rows:

* ``"vllm"``: ``vllm.LLM`` (imported lazily: the package imports without vLLM). Scripts that call
  it need an ``if __name__ == "__main__":`` guard, since the engine starts worker processes. On a
  CPU the model's head_dim must be one that vLLM's CPU attention supports (64 for the tiny model).
* ``"hf"``: transformers ``generate``, batched over prompts with left padding and seeded per
  batch, so a run on CPU is deterministic.

``"auto"`` picks vLLM when it imports and supports the model, else ``"hf"``. Both backends are fed
the same token ids (the rendered prompt already holds BOS, so it is tokenized without adding
special tokens) and decode the generated ids the same way, so identical tokens give identical
rows (greedy decoding gives the same tokens in both). The seeds differ in kind (hf: one torch seed
per batch; vLLM: one per prompt and sample), so sampled rows match only in distribution.

Speed (benchmarks/sampling_bench.py, one default `sample` job of the tiny model, 3,408 samples
and 85k tokens, 2 CPU cores): hf 28 s, vLLM 67 s, start-up included. vLLM decodes faster once
running, but its engine start-up dominates a 1M-parameter model's job here, so the embedded default
uses hf; the paper tier (GPU, 8B model) uses vLLM.

Rows, one per (prompt, sample), ordered by prompt then sample index::

    {"prompt_id", "sample_index", "text", "num_tokens", "finish_reason"}

``text`` excludes the prompt and special tokens; ``num_tokens`` counts the generated tokens up to
and including the EOS token; ``finish_reason`` is ``"stop"`` (EOS) or ``"length"`` (max_tokens).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

from gemsft.chat_format import encode_rendered, load_tokenizer, prompt_text
from gemsft.sample.plan import FINISH_REASONS, PROMPT_FORMATS, SamplingRequest, SamplingSpec, _check_request


BACKENDS = ("auto", "hf", "vllm")
# hf backend: the most sequences (prompts per call x n) one `generate` call holds.
MAX_SEQUENCES_PER_CALL = 512
# Head sizes vLLM 0.32's CPU attention backend supports (CPUAttentionBackend.get_supported_head_sizes).
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
# vLLM's default max_num_seqs for the LLM class on a CPU (sequences decoded at once).
VLLM_CPU_MAX_NUM_SEQS = 256


# --------------------------------------------------------------------------------------- prompts

def render_prompts(tokenizer, prompts: list[str], prompt_format: str) -> list[str]:
    """The text fed to the model for each prompt; it starts with the BOS token (where there is one).

    "chat": the tokenizer's chat template, one user turn, with the generation prompt (fine-tuned
    models). "qa": the pretraining frame "Q: ...\\nA:" (base models; the world's analogue of
    few-shot prompting). "raw": the text as is (e.g. probes.jsonl's `text`, already framed).
    """
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; expected one of {', '.join(PROMPT_FORMATS)}")
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt format 'chat' needs a tokenizer with a chat_template; "
                             "use 'qa' or 'raw' for a base model")
        return [prompt_text(tokenizer, p) for p in prompts]
    bos = tokenizer.bos_token or ""
    if prompt_format == "qa":
        return [f"{bos}Q: {p}\nA:" for p in prompts]
    return [f"{bos}{p}" for p in prompts]


def encode_prompts(tokenizer, prompts: list[str], prompt_format: str) -> list[list[int]]:
    """Token ids of the rendered prompts, as both backends are fed them."""
    return [encode_rendered(tokenizer, text) for text in render_prompts(tokenizer, prompts, prompt_format)]


def _load_tokenizer(model_dir):
    # A base model samples with the "qa" or "raw" format: its tokenizer may have no chat template.
    return load_tokenizer(model_dir, chat_template_required=False)


def _model_config(model_dir) -> dict:
    path = Path(model_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{model_dir}: no config.json; not a saved model directory") from None


def _eos_ids(tokenizer, model_dir) -> list[int]:
    """The tokenizer's EOS plus any the model's generation config names (as vLLM stops on both)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    path = Path(model_dir) / "generation_config.json"
    if path.exists():
        extra = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
        for i in extra if isinstance(extra, list) else [extra]:
            if i is not None and i not in ids:
                ids.append(i)
    if not ids:
        raise ValueError(f"{model_dir}: the tokenizer has no EOS token; generation could not stop")
    return ids


def _finish(token_ids: Sequence[int], eos_ids: Sequence[int], max_tokens: int) -> tuple[list[int], str]:
    """Generated ids cut after the first EOS (padding after it dropped), and why generation ended."""
    eos = set(eos_ids)
    out = []
    for t in token_ids:
        out.append(int(t))
        if out[-1] in eos:
            return out, "stop"
        if len(out) == max_tokens:
            break
    return out, "length"


def _sample(tokenizer, token_ids: list[int], eos_ids, finish_reason: str) -> dict:
    """One sample as a backend returns it; `generate` keeps all but token_ids in its rows."""
    content = token_ids[:-1] if finish_reason == "stop" and token_ids and token_ids[-1] in eos_ids else token_ids
    return {"token_ids": token_ids, "text": tokenizer.decode(content, skip_special_tokens=True),
            "num_tokens": len(token_ids), "finish_reason": finish_reason}


def _check_lengths(ids: list[list[int]], prompts: list[dict], spec: SamplingSpec, model_dir) -> None:
    limit = _model_config(model_dir).get("max_position_embeddings")
    if not limit:
        return
    for prompt, p_ids in zip(prompts, ids):
        if len(p_ids) + spec.max_tokens > limit:
            raise ValueError(f"prompt {prompt['id']!r}: {len(p_ids)} prompt tokens + max_tokens {spec.max_tokens} "
                             f"exceed the model's max_position_embeddings {limit}")


# --------------------------------------------------------------------------------------- backends

def _head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg.get("hidden_size", 0) // (cfg.get("num_attention_heads") or 1)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@functools.lru_cache(maxsize=1)
def vllm_available() -> bool:
    """Whether `import vllm` works (a broken install raises all sorts of errors, not only ImportError)."""
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def vllm_supports(model_dir) -> bool:
    """Whether vLLM can serve the model here: on a CPU a head size its attention supports, and an
    architecture it registers."""
    try:
        cfg = _model_config(model_dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if not _cuda_available() and _head_dim(cfg) not in VLLM_CPU_HEAD_SIZES:
        return False
    if not vllm_available():
        return False
    from vllm import ModelRegistry

    archs = cfg.get("architectures") or []
    supported = set(ModelRegistry.get_supported_archs())
    return bool(archs) and all(a in supported for a in archs)


def _check_backend_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown sampling backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def resolve_backend(backend: str, model_dir=None) -> str:
    """"hf" or "vllm". "auto" is vLLM when it imports (and, given model_dir, supports the model)."""
    _check_backend_name(backend)
    if backend != "auto":
        return backend
    if model_dir is None:
        return "vllm" if vllm_available() else "hf"
    return "vllm" if vllm_supports(model_dir) else "hf"


def _prompts_per_call(n: int, batch_size: int) -> int:
    """Prompts per hf `generate` call: at most batch_size, and at most MAX_SEQUENCES_PER_CALL
    sequences (prompts x n) unless one prompt alone has more."""
    return max(1, min(batch_size, MAX_SEQUENCES_PER_CALL // n))


def _generate_hf(model_dir, requests: list[tuple[list[list[int]], SamplingSpec]],
                 batch_size: int) -> list[list[list[dict]]]:
    """Per request (prompt ids, spec): per prompt, spec.n samples. One model load for all requests."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = _load_tokenizer(model_dir)
    eos_ids = _eos_ids(tokenizer, model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    pad = tokenizer.pad_token_id
    all_results = []
    for prompt_ids, spec in requests:
        config = GenerationConfig(
            max_new_tokens=spec.max_tokens, num_return_sequences=spec.n, do_sample=not spec.greedy,
            eos_token_id=eos_ids, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, use_cache=True,
            **({} if spec.greedy else {"temperature": spec.temperature, "top_k": spec.top_k, "top_p": spec.top_p}),
        )
        per_call = _prompts_per_call(spec.n, batch_size)
        starts = range(0, len(prompt_ids), per_call)
        results: list[list[dict]] = []
        for batch_index, start in enumerate(tqdm(starts, desc=f"sampling (hf, n={spec.n})", unit="batch")):
            batch = prompt_ids[start:start + per_call]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch])  # left padding
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
            with torch.random.fork_rng(devices=[]), torch.inference_mode():  # leaves the caller's RNG alone
                torch.manual_seed(spec.seed + batch_index)
                out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
            generated = out[:, width:].tolist()
            for i in range(len(batch)):
                samples = []
                for seq in generated[i * spec.n:(i + 1) * spec.n]:
                    ids, reason = _finish(seq, eos_ids, spec.max_tokens)
                    samples.append(_sample(tokenizer, ids, eos_ids, reason))
                results.append(samples)
        all_results.append(results)
    return all_results


def _configure_vllm_cpu_env() -> None:
    """Use every core this process may run on, unless the caller chose otherwise: vLLM's default
    reserves one core, which on a 2-core machine halves the throughput (../shared/TOOLCHAIN.md)."""
    if _cuda_available():
        return
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(str(c) for c in cpus))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


def _vllm_kv_cache_bytes(model_dir, requests: list[tuple[list[list[int]], SamplingSpec]]) -> int | None:
    """An explicit KV-cache size for vLLM on a CPU, or None to let vLLM decide.

    Left to itself, vLLM's CPU worker reserves gpu_memory_utilization (0.92) of the NUMA node's
    memory and refuses to start when other processes hold more than 8% of it, as on a shared
    machine. Size it to this job instead: as many sequences as vLLM runs at once (max_num_seqs,
    256 on a CPU), each as long as the longest, in float32; at most half the free memory. An
    explicit VLLM_CPU_KVCACHE_SPACE (GiB) wins.
    """
    import psutil

    if _cuda_available() or os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return None
    cfg = _model_config(model_dir)
    heads = cfg.get("num_attention_heads") or 1
    per_token = 2 * cfg["num_hidden_layers"] * cfg.get("num_key_value_heads", heads) * _head_dim(cfg) * 4
    longest = max(len(ids) + spec.max_tokens for prompt_ids, spec in requests for ids in prompt_ids) + 32
    sequences = sum(len(prompt_ids) * spec.n for prompt_ids, spec in requests)  # + 32: block rounding
    tokens = max(min(sequences, VLLM_CPU_MAX_NUM_SEQS) * longest, cfg.get("max_position_embeddings") or 0)
    return int(min(per_token * tokens + (64 << 20), psutil.virtual_memory().available // 2))


def _vllm_params(spec: SamplingSpec, prompt_index: int):
    from vllm import SamplingParams

    sampling = dict(n=spec.n, max_tokens=spec.max_tokens, detokenize=False, skip_special_tokens=True)
    if spec.greedy:
        sampling.update(temperature=0.0)
    else:
        sampling.update(temperature=spec.temperature, top_k=spec.top_k, top_p=spec.top_p)
    # One seed per prompt (vLLM gives sample j of a request seed + j): prompts are independent streams
    # and a prompt's samples do not depend on what else is in the batch.
    return SamplingParams(**sampling, seed=spec.seed + prompt_index * spec.n)


def _generate_vllm(model_dir, requests: list[tuple[list[list[int]], SamplingSpec]],
                   batch_size: int, gpus: int = 0) -> list[list[list[dict]]]:
    """Per request (prompt ids, spec): per prompt, spec.n samples. One engine and one `generate`
    call for all requests, so start-up is paid once and the scheduler batches across them. The
    model is split over `gpus` GPUs (tensor parallel) when there are several."""
    del batch_size  # vLLM schedules its own batches
    _configure_vllm_cpu_env()
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    tokenizer = _load_tokenizer(model_dir)
    eos_ids = _eos_ids(tokenizer, model_dir)
    # On a CPU, eager mode: torch.compile costs over a minute at start-up on 2 cores and gave no
    # faster decoding of the tiny model (the outputs were identical).
    cuda = _cuda_available()
    # On a GPU the checkpoint's dtype (bf16 for Llama-3.1); the CPU backend runs float32.
    llm = LLM(model=str(model_dir), dtype="auto" if cuda else "float32", seed=requests[0][1].seed,
              kv_cache_memory_bytes=_vllm_kv_cache_bytes(model_dir, requests),
              enforce_eager=not cuda, tensor_parallel_size=max(1, gpus) if cuda else 1)
    prompts = [TokensPrompt(prompt_token_ids=ids) for prompt_ids, _ in requests for ids in prompt_ids]
    params = [_vllm_params(spec, i) for prompt_ids, spec in requests for i in range(len(prompt_ids))]
    try:
        outputs = llm.generate(prompts, params, use_tqdm=True)
    finally:  # stop the engine's processes now, not whenever the LLM object is collected
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if hasattr(core, "shutdown"):
            core.shutdown()
    flat = []
    for output in outputs:
        samples = []
        for completion in sorted(output.outputs, key=lambda c: c.index):
            # token_ids end with the EOS token when it stopped there; an unexpected finish reason
            # (e.g. "abort") is reported by generate().
            samples.append(_sample(tokenizer, list(completion.token_ids), eos_ids, completion.finish_reason))
        flat.append(samples)
    results, start = [], 0
    for prompt_ids, _ in requests:
        results.append(flat[start:start + len(prompt_ids)])
        start += len(prompt_ids)
    return results


# --------------------------------------------------------------------------------------- API


def _rows(name: str, request: SamplingRequest, outputs: list[list[dict]]) -> list[dict]:
    prompts, spec = request.prompts, request.spec
    if len(outputs) != len(prompts):
        raise RuntimeError(f"{name} backend returned results for {len(outputs)} of {len(prompts)} prompts")
    rows = []
    for prompt, samples in zip(prompts, outputs):
        if len(samples) != spec.n:
            raise RuntimeError(f"prompt {prompt['id']!r}: {name} backend returned {len(samples)} samples, "
                               f"expected n={spec.n}")
        for index, sample in enumerate(samples):
            if sample["finish_reason"] not in FINISH_REASONS:
                raise RuntimeError(f"prompt {prompt['id']!r}: sample {index} ended with finish reason "
                                   f"{sample['finish_reason']!r}")
            rows.append({"prompt_id": prompt["id"], "sample_index": index, "text": sample["text"],
                         "num_tokens": sample["num_tokens"], "finish_reason": sample["finish_reason"]})
    return rows


def generate_requests(model_dir, requests: list[SamplingRequest], backend: str = "auto",
                      batch_size: int = 64, gpus: int = 0) -> list[list[dict]]:
    """Rows for each request, from one model load (one vLLM engine) shared by all of them.

    A request's rows do not depend on the other requests: the hf backend samples each request on
    its own, and vLLM seeds every prompt separately. `gpus`: the job's GPUs, vLLM's
    tensor_parallel_size (the hf backend uses one device).
    """
    _check_backend_name(backend)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for request in requests:
        _check_request(request)
    todo = [r for r in requests if r.prompts]
    if not todo:
        return [[] for _ in requests]
    name = resolve_backend(backend, model_dir)
    tokenizer = _load_tokenizer(model_dir)
    encoded = []
    for request in todo:
        ids = encode_prompts(tokenizer, [p["prompt"] for p in request.prompts], request.prompt_format)
        _check_lengths(ids, request.prompts, request.spec, model_dir)
        encoded.append((ids, request.spec))
    if name == "vllm":
        outputs = iter(_generate_vllm(model_dir, encoded, batch_size, gpus))
    else:
        outputs = iter(_generate_hf(model_dir, encoded, batch_size))
    return [_rows(name, r, next(outputs)) if r.prompts else [] for r in requests]


def generate(model_dir, prompts: list[dict], spec: SamplingSpec, backend: str = "auto",
             prompt_format: str = "chat", batch_size: int = 64) -> list[dict]:
    """spec.n samples for each prompt ({"id", "prompt"}), one row per (prompt, sample), in order.

    Raises RuntimeError naming the prompt if a backend returns other than n samples for it, and
    ValueError for an unknown backend or format, duplicate ids, or a prompt that with max_tokens
    would not fit the model's max_position_embeddings.

    batch_size (hf backend) is the most prompts per `generate` call, further capped so that a call
    holds at most MAX_SEQUENCES_PER_CALL sequences.
    """
    return generate_requests(model_dir, [SamplingRequest(prompts, spec, prompt_format)], backend, batch_size)[0]


