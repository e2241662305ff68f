"""The vLLM sampling backend: one engine for every request of a job (tensor parallel over the job's
GPUs), per-prompt seeds, the same stop ids and rows as the hf backend. vLLM is imported lazily, so the
package imports without it; on a CPU only the head sizes its attention supports are served."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from gemsft.model_loading import dtype_name
from gemsft.sample.plan import SamplingSpec
from gemsft.sample.decoding import cuda_available, decoded_sample, head_dim, load_sampling_tokenizer, model_config, stop_ids_of


# Head sizes vLLM 0.32's CPU attention backend supports (CPUAttentionBackend.get_supported_head_sizes).
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


# vLLM's default max_num_seqs for the LLM class on a CPU (sequences decoded at once).
VLLM_CPU_MAX_NUM_SEQS = 256


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
        cfg = model_config(model_dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    if not cuda_available() and head_dim(cfg) not in VLLM_CPU_HEAD_SIZES:
        return False
    if not vllm_available():
        return False
    from vllm import ModelRegistry

    archs = cfg.get("architectures") or []
    supported = set(ModelRegistry.get_supported_archs())
    return bool(archs) and all(a in supported for a in archs)


def _configure_vllm_cpu_env() -> None:
    """Use every core this process may run on, unless the caller chose otherwise: vLLM's default
    reserves one core, which on a 2-core machine halves the throughput (../shared/TOOLCHAIN.md)."""
    if cuda_available():
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

    if cuda_available() or os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return None
    cfg = model_config(model_dir)
    heads = cfg.get("num_attention_heads") or 1
    per_token = 2 * cfg["num_hidden_layers"] * cfg.get("num_key_value_heads", heads) * head_dim(cfg) * 4
    longest = max(len(ids) + spec.max_tokens for prompt_ids, spec in requests for ids in prompt_ids) + 32
    sequences = sum(len(prompt_ids) * spec.n for prompt_ids, spec in requests)  # + 32: block rounding
    tokens = max(min(sequences, VLLM_CPU_MAX_NUM_SEQS) * longest, cfg.get("max_position_embeddings") or 0)
    return int(min(per_token * tokens + (64 << 20), psutil.virtual_memory().available // 2))


def _vllm_cpu_prefill(model_dir) -> dict:
    """On a CPU, every prompt prefilled in one step. vLLM 0.32 prefills a long prompt (or the rest of
    a step's 4096-token budget) in chunks and then rewinds the request's seeded generator with
    `Generator.set_offset`, which only CUDA generators have: on a CPU the engine died with "CPU
    Generator does not use offset" as soon as a job's prompts exceeded one step (e.g. 32 samples of
    a few chat prompts). Without chunked prefill the step budget must hold the longest sequence."""
    context = model_config(model_dir).get("max_position_embeddings") or 0
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(context, 4096)}


def vllm_params(spec: SamplingSpec, prompt_index: int, stop_ids: Sequence[int]):
    from vllm import SamplingParams

    # vLLM stops on EOS by itself, not on the template's end-of-turn token (kept in token_ids, as in hf).
    sampling = dict(n=spec.n, max_tokens=spec.max_tokens, detokenize=False, skip_special_tokens=True,
                    stop_token_ids=list(stop_ids))
    if spec.greedy:
        sampling.update(temperature=0.0)
    else:
        sampling.update(temperature=spec.temperature, top_k=spec.top_k, top_p=spec.top_p)
    # One seed per prompt (vLLM gives sample j of a request seed + j): prompts are independent streams
    # and a prompt's samples do not depend on what else is in the batch.
    return SamplingParams(**sampling, seed=spec.seed + prompt_index * spec.n)


def generate_vllm(model_dir, requests: list[tuple[list[list[int]], SamplingSpec]],
                   batch_size: int, gpus: int = 0, loading: dict | None = None) -> list[list[list[dict]]]:
    """Per request (prompt ids, spec): per prompt, spec.n samples. One engine and one `generate`
    call for all requests, so start-up is paid once and the scheduler batches across them. The
    model is split over `gpus` GPUs (tensor parallel) when there are several."""
    del batch_size  # vLLM schedules its own batches
    _configure_vllm_cpu_env()
    from vllm import LLM
    from vllm.inputs import TokensPrompt

    tokenizer = load_sampling_tokenizer(model_dir)
    stop_ids = stop_ids_of(tokenizer, model_dir)
    # On a CPU, eager mode: torch.compile costs over a minute at start-up on 2 cores and gave no
    # faster decoding of the tiny model (the outputs were identical).
    cuda = cuda_available()
    # The settings' dtype: "auto" is bf16 on a GPU, float32 on a CPU (vLLM picks its own attention).
    llm = LLM(model=str(model_dir), dtype=dtype_name((loading or {}).get("dtype"), "cuda" if cuda else "cpu"),
              seed=requests[0][1].seed,
              kv_cache_memory_bytes=_vllm_kv_cache_bytes(model_dir, requests),
              enforce_eager=not cuda, tensor_parallel_size=max(1, gpus) if cuda else 1,
              **({} if cuda else _vllm_cpu_prefill(model_dir)))
    prompts = [TokensPrompt(prompt_token_ids=ids) for prompt_ids, _ in requests for ids in prompt_ids]
    params = [vllm_params(spec, i, stop_ids) for prompt_ids, spec in requests for i in range(len(prompt_ids))]
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
            # token_ids end with the stop token when it stopped there; an unexpected finish reason
            # (e.g. "abort") is reported by generate().
            samples.append(decoded_sample(tokenizer, list(completion.token_ids), stop_ids, completion.finish_reason))
        flat.append(samples)
    results, start = [], 0
    for prompt_ids, _ in requests:
        results.append(flat[start:start + len(prompt_ids)])
        start += len(prompt_ids)
    return results
