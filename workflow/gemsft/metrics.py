"""The evaluation metrics as a public API, for use outside the pipeline. Each lives with its stage:
pass@k with the code evaluation, majority voting with math, the math answer extraction in
`gemsft.math_answer`, the diversity metrics in `gemsft.evaluate.diversity_metrics` (the paper's
three) and `gemsft.evaluate.newer_diversity` (EAD, the Vendi score and the world's distinct_k)."""

from gemsft.evaluate.code import pass_at_k
from gemsft.evaluate.diversity_metrics import (coverage, kl_to_world, ngram_diversity, sbert_diversity,
                                               sbert_diversity_from_embeddings, self_bleu_diversity)
from gemsft.evaluate.newer_diversity import distinct_k, ead_diversity, vendi_score
from gemsft.evaluate.math_accuracy import majority_vote
from gemsft.math_answer import (LAST_NUMBER, MARKER, MathAnswer, extract_math_answer,
                                         extract_math_answer_with_source)

__all__ = ["LAST_NUMBER", "MARKER", "MathAnswer", "coverage", "distinct_k", "ead_diversity", "extract_math_answer",
           "extract_math_answer_with_source", "kl_to_world", "majority_vote", "ngram_diversity", "pass_at_k",
           "sbert_diversity", "sbert_diversity_from_embeddings", "self_bleu_diversity", "vendi_score"]
