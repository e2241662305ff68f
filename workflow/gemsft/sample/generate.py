"""Sampling responses from a model: n samples per prompt through vLLM or transformers.

The paper samples with temperature 0.6, top-k 50, top-p 0.9 and seed 42 (:class:`SamplingSpec`'s
defaults). Two backends give the same rows:

* ``"vllm"`` (`gemsft.sample.vllm_backend`): ``vllm.LLM`` (imported lazily: the package imports without vLLM). Scripts that call
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
uses hf; the paper tier (GPU, 8B model) uses vLLM. The hf backend prefills each prompt once for its n
samples into a static KV cache (`shared_prefill`): the same rows as `generate`'s own path, whose
sampling call is 1.4x slower on a default job (benchmarks/results/sampling_prefill_bench.json).

Rows, one per (prompt, sample), ordered by prompt then sample index::

    {"prompt_id", "sample_index", "text", "num_tokens", "finish_reason"}

``text`` excludes the prompt and special tokens; ``num_tokens`` counts the generated tokens up to
and including the stop token; ``finish_reason`` is ``"stop"`` or ``"length"`` (max_tokens). Stop
tokens (`gemsft.sample.decoding.stop_ids_of`): the template's end-of-turn token (Llama-3.1: <|eot_id|>, not the base model's
EOS <|end_of_text|>, on which alone samples would run on into invented turns), EOS, and any EOS of
the model's generation config.
"""

from __future__ import annotations


from gemsft.chat_format import encode_rendered, prompt_text
from gemsft.model_loading import load_causal_lm, resolve_model
from gemsft.sample.base_prompt import qa_prompt
from gemsft.sample.plan import FINISH_REASONS, PROMPT_FORMATS, SamplingRequest, SamplingSpec, _check_request
from gemsft.sample.decoding import decoded_sample, finish, load_sampling_tokenizer, model_config, stop_ids_of
from gemsft.sample.vllm_backend import generate_vllm, vllm_available, vllm_supports


BACKENDS = ("auto", "hf", "vllm")
# hf backend: the most sequences (prompts per call x n) one `generate` call holds.
MAX_SEQUENCES_PER_CALL = 512
# hf backend: prefill each prompt once for its n samples (`shared_prefill`); False leaves the repetition
# to `generate` (benchmarks/sampling_bench.py's "hf-repeat" times the two side by side).
SHARED_PREFILL = True


# --------------------------------------------------------------------------------------- prompts

def render_prompts(tokenizer, prompts: list[str], prompt_format: str) -> list[str]:
    """The text fed to the model for each prompt; it starts with the BOS token (where there is one).

    "chat": the tokenizer's chat template, one user turn, with the generation prompt (fine-tuned
    models). "qa": the pretraining frame "Q: ...\\nA:" (base models, 0-shot). "raw": the text as is
    (e.g. probes.jsonl's `text`, or a k-shot prompt framed by gemsft.sample.base_prompt).
    """
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; expected one of {', '.join(PROMPT_FORMATS)}")
    if prompt_format == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt format 'chat' needs a tokenizer with a chat_template; "
                             "use 'qa' or 'raw' for a base model")
        return [prompt_text(tokenizer, p) for p in prompts]
    bos = tokenizer.bos_token or ""
    if prompt_format == "qa":  # the 0-shot frame; k-shot prompts are framed by gemsft.sample.base_prompt
        return [bos + qa_prompt(p) for p in prompts]
    return [f"{bos}{p}" for p in prompts]


def encode_prompts(tokenizer, prompts: list[str], prompt_format: str) -> list[list[int]]:
    """Token ids of the rendered prompts, as both backends are fed them."""
    return [encode_rendered(tokenizer, text) for text in render_prompts(tokenizer, prompts, prompt_format)]


def _check_lengths(ids: list[list[int]], prompts: list[dict], spec: SamplingSpec, model_dir) -> None:
    limit = model_config(model_dir).get("max_position_embeddings")
    if not limit:
        return
    for prompt, p_ids in zip(prompts, ids):
        if len(p_ids) + spec.max_tokens > limit:
            raise ValueError(f"prompt {prompt['id']!r}: {len(p_ids)} prompt tokens + max_tokens {spec.max_tokens} "
                             f"exceed the model's max_position_embeddings {limit}")


# --------------------------------------------------------------------------------------- backends


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


def shared_prefill(model, input_ids, attention, n: int, max_new_tokens: int):
    """A KV cache for `generate` holding every prompt token but the last, computed once per prompt and
    repeated for its n samples (rows prompt-major, as num_return_sequences orders them), with room for
    the last prompt token and `max_new_tokens` more.

    Two costs of `generate`'s own path go: it repeats each prompt n times before the prefill (n x L
    tokens of forward pass for one prompt of L tokens, the n copies holding the same keys and
    values), and its dynamic cache grows by concatenation, copying the whole (n x L)-row cache at every
    step; a static cache is written in place. `generate` then processes only the last prompt token,
    whose logits give the first sample. Positions follow `generate`'s own convention for left padding
    (the attention mask's running count, padding at 1), so the cached keys are those `generate` would
    compute: the rows are the same (tests/test_sampling.py; benchmarks/sampling_bench.py's hf-repeat)."""
    from transformers import DynamicCache, StaticCache

    position_ids = (attention.long().cumsum(-1) - 1).masked_fill(attention == 0, 1)
    prompt_cache = DynamicCache(config=model.config)
    model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1], position_ids=position_ids[:, :-1],
          past_key_values=prompt_cache, use_cache=True, logits_to_keep=1)
    cache = StaticCache(config=model.config, max_cache_len=input_ids.shape[1] + max_new_tokens)
    for index, layer in enumerate(prompt_cache.layers):
        cache.update(layer.keys.repeat_interleave(n, dim=0), layer.values.repeat_interleave(n, dim=0), index)
    return cache


def _generate_hf(model_dir, requests: list[tuple[list[list[int]], SamplingSpec]],
                 batch_size: int, loading: dict | None = None) -> list[list[list[dict]]]:
    """Per request (prompt ids, spec): per prompt, spec.n samples. One model load for all requests,
    on the stage's device in the `loading` settings' dtype (gemsft.model_loading)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    tokenizer = load_sampling_tokenizer(model_dir)
    stop_ids = stop_ids_of(tokenizer, model_dir)
    model = load_causal_lm(model_dir, loading).eval()
    pad = tokenizer.pad_token_id
    all_results = []
    for prompt_ids, spec in requests:
        config = GenerationConfig(
            max_new_tokens=spec.max_tokens, num_return_sequences=spec.n, do_sample=not spec.greedy,
            eos_token_id=stop_ids, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, use_cache=True,
            **({} if spec.greedy else {"temperature": spec.temperature, "top_k": spec.top_k, "top_p": spec.top_p}),
        )
        # The same settings on inputs already repeated n times (after the shared prefill).
        expanded = GenerationConfig(**{**config.to_dict(), "num_return_sequences": 1})
        per_call = _prompts_per_call(spec.n, batch_size)
        starts = range(0, len(prompt_ids), per_call)
        results: list[list[dict]] = []
        for batch_index, start in enumerate(tqdm(starts, desc=f"sampling (hf, n={spec.n})", unit="batch")):
            batch = prompt_ids[start:start + per_call]
            width = max(len(ids) for ids in batch)
            input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=model.device)
            attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch]).to(input_ids)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():  # leaves the caller's RNG alone
                torch.manual_seed(spec.seed + batch_index)
                if SHARED_PREFILL and spec.n > 1 and width > 1:
                    cache = shared_prefill(model, input_ids, attention, spec.n, spec.max_tokens)
                    out = model.generate(input_ids=input_ids.repeat_interleave(spec.n, dim=0),
                                         attention_mask=attention.repeat_interleave(spec.n, dim=0),
                                         past_key_values=cache, generation_config=expanded)
                else:
                    out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
            generated = out[:, width:].tolist()
            for i in range(len(batch)):
                samples = []
                for seq in generated[i * spec.n:(i + 1) * spec.n]:
                    ids, reason = finish(seq, stop_ids, spec.max_tokens)
                    samples.append(decoded_sample(tokenizer, ids, stop_ids, reason))
                results.append(samples)
        all_results.append(results)
    return all_results


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
                      batch_size: int = 64, gpus: int = 0, loading: dict | None = None) -> list[list[dict]]:
    """Rows for each request, from one model load (one vLLM engine) shared by all of them.

    A request's rows do not depend on the other requests: the hf backend samples each request on
    its own, and vLLM seeds every prompt separately. `gpus`: the job's GPUs, vLLM's
    tensor_parallel_size (the hf backend uses one device). `model_dir`: a directory or hub id;
    `loading`: the model's dtype and attention settings (gemsft.model_loading.loading_settings).
    """
    _check_backend_name(backend)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for request in requests:
        _check_request(request)
    todo = [r for r in requests if r.prompts]
    if not todo:
        return [[] for _ in requests]
    model_dir = resolve_model(model_dir)  # a hub id: its snapshot in the Hugging Face cache
    name = resolve_backend(backend, model_dir)
    tokenizer = load_sampling_tokenizer(model_dir)
    encoded = []
    for request in todo:
        ids = encode_prompts(tokenizer, [p["prompt"] for p in request.prompts], request.prompt_format)
        _check_lengths(ids, request.prompts, request.spec, model_dir)
        encoded.append((ids, request.spec))
    if name == "vllm":
        outputs = iter(generate_vllm(model_dir, encoded, batch_size, gpus, loading))
    else:
        outputs = iter(_generate_hf(model_dir, encoded, batch_size, loading))
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


