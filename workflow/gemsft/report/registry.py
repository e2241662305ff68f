"""The report's contents: which tables and figures exist, and the caption of each.

Plain data with no imports: the rules (rules/common.smk) read it on every Snakemake start (dry runs,
each SLURM job's own Snakemake), which must not pay for pandas' table code, matplotlib or torch. The
table builders (`gemsft.report.tables`) and the figure modules (`gemsft.report.figures`) take their
names and captions from here.
"""

_CI = "Mean over seeds ± the larger side of the 95% bootstrap interval"
# Beside every number a reward model trained by the DAG scored (gemsft.report.reward_accuracy).
_RM_IN_TITLE = ("With a reward model trained here, the title gives its pair accuracy (%) on the chat preference "
                "prompts held out from its training, with its 95% bootstrap interval: the win rates are only as "
                "good as the reward model that picked and scored the samples.")
#: a run whose samples of a task ran to max_tokens more often than this (%) is flagged in the report
TRUNCATED_FLAG_PERCENT = 5.0

#: table name -> caption, in the report's order: the claims' scoreboard first; the last one compares
#: with the paper's numbers
TABLE_CAPTIONS = {
    "claims": "The paper's qualitative claims on our runs (results/claims.csv): the difference A − B between the "
              "claim's two runs, on the per-item values both answered, with the 95% percentile interval of a paired "
              "bootstrap (seed pairs resampled, then items with the same draws for both runs). Supported: the "
              "interval excludes 0 on the paper's side; contradicted: on the other side; inconclusive: it contains "
              "0; untestable: a side is missing or both sit at the metric's floor or ceiling (the reason says "
              "which).",
    "data": "The data: rows of each file, rows dropped before training and why (a conversation or preference "
            "pair with an empty or whitespace-only turn), and the SFT rows the length policy left out "
            "(train.length_policy at train.max_length; one number when every run agrees).",
    "diversity": f"Output diversity on chat, 0-100, higher is more diverse (cf. paper Table 2); KL in nats. {_CI}.",
    "beta_sweep": "Chat win rate against the reference: one sample and best-of-N, CE and GEM across beta "
                  "(cf. paper Table 3), under the reward model (RM). In the embedded world also under its "
                  "oracle reward, the answers' true quality: best-of-N picked by the oracle, and picked by "
                  "the RM but scored by the oracle (RM's BoN). For an RM trained here, its pair accuracy (%) on "
                  f"the chat preference prompts held out from its training (one RM scores every run). {_CI}.",
    "math": f"Math: greedy accuracy, majority voting and pass rate over the samples (cf. paper Table 4). {_CI}.",
    "entropy": f"Mean next-token entropy (nats) and perplexity on the SFT test set (cf. paper Section 6.1). {_CI}.",
    "alignment_tax": "Knowledge accuracy and alignment tax (base minus tuned, points; cf. paper Section 6.2, "
                     f"Figure 8). {_CI}; the average has no interval.",
    "code": f"Code pass@k, world tasks and HumanEval (cf. paper Figure 7b). {_CI}.",
    "truncation": "Samples cut at max_tokens instead of ending their turn (finish reason 'length'), % of each "
                  f"task's samples (math: the samples and the greedy answer). A run over {TRUNCATED_FLAG_PERCENT:g}% in a task is "
                  f"flagged: its scores there are of cut-off answers. {_CI}.",
    "paper_vs_reproduction": "The paper's numbers beside ours (Llama-3.1-8B there, the embedded world here), "
                             "and the verdict on each qualitative claim about a number with its paired difference "
                             "and 95% interval (the claims table has every claim). With a reward model trained "
                             "here, its held-out pair accuracy (%) stands beside every number it scored (column "
                             "'RM held-out accuracy').",
}
TABLE_NAMES = tuple(TABLE_CAPTIONS)

#: figure name (= its module in gemsft.report.figures) -> caption: what is plotted, from which stage
FIGURE_CAPTIONS = {
    # Figures 2-4 and Proposition 2 (pure computation, no summary needed)
    "probability_transfer": (
        "Probability transfer (paper Figures 2-4) and Proposition 2, computed with the project's CE and "
        "GEM losses on a 10-token softmax model (no pipeline stage; pure computation). Top: the "
        "'pre-trained' distribution and the distributions after 300 gradient steps (learning rate 0.1) "
        "on one example whose label is token 3 (outlined), with CE, GEM at beta = 0 (run as beta = 1e-3) "
        "and GEM at beta = 0.7; black ticks mark the initial probabilities. CE transfers mass from every "
        "token and collapses onto the target; GEM beta = 0 lowers only the most likely tokens and stops "
        "as soon as the target is the most likely, leaving the other tokens' logits unchanged. Bottom "
        "left: target probability over the steps. Bottom right: Proposition 2, distance "
        "||f_t - f*||_2 of the model trained with GEM on data with label distribution p > 0 to the "
        "fixed point f* = softmax(beta log p) (proportional to p^beta; the auxiliary q* = p), for several "
        "beta; beta = 1 is CE's optimum f* = p. The dashed line is the distance to p itself for "
        "beta = 0.7, which does not vanish."
    ),
    "fig6_diversity_vs_winrate": (
        "Figure 6, diversity against best-of-N quality on chat: each point is one fine-tuned run "
        "(objective and beta, averaged over seeds); x is the output diversity of its chat samples "
        "(diversity stage, task chat, default metric SBERT diversity = 100 x (1 - mean pairwise cosine "
        "similarity)), y the best-of-N win rate (%) against the reference at the largest N (chat "
        "scoring stage, metric win_rate). Error bars in both directions are 95% bootstrap intervals "
        f"over prompts. {_RM_IN_TITLE}"
    ),
    "fig7a_bon_scaling": (
        "Figure 7(a), test-time scaling on chat: best-of-N win rate (%) against the reference answers "
        "as a function of the number of samples N (log2 axis), one line per fine-tuned run, from the "
        "chat scoring stage (task chat, metric win_rate, k = N; reward-model best-of-N, Bradley-Terry "
        "win probability, averaged over prompts and seeds). Shaded bands are 95% bootstrap intervals "
        "over prompts. N = 1 is plain random sampling. In the embedded world a second panel shows the "
        "win rate under the world's oracle reward (the answers' true quality; metric oracle_win_rate): "
        "solid lines pick the best of N by the oracle, dashed lines pick it by the reward model and score "
        f"it by the oracle (rm_selected_oracle_win_rate). {_RM_IN_TITLE}"
    ),
    "fig7b_pass_at_k": (
        "Figure 7(b), test-time scaling on code: pass@k (%, unbiased estimator 1 - C(n-c,k)/C(n,k)) "
        "against the number of samples k (log axis), one panel per code task present (the synthetic "
        "world's code task and/or HumanEval), one line per run, from the code evaluation stage (task "
        "code / humaneval, metric pass_at_k). Shaded bands are 95% bootstrap intervals over problems."
    ),
    "fig8_knowledge": (
        "Figure 8, forgetting: accuracy (%) on each knowledge task for the pre-trained model and every "
        "fine-tuned run (bars; one panel per task and metric, from the knowledge / lm-eval stage), with "
        "95% bootstrap intervals over questions as error bars. The dashed line is the pre-trained "
        "score: the gap below it is the alignment tax. With several tasks a last panel averages them "
        "(no interval). Y-axes are zoomed to the range of the scores."
    ),
    "fig9_parameter_distance": (
        "Figure 9, distance from the pre-trained model: l2 norm of (fine-tuned - pre-trained) "
        "parameters, ||theta - theta_0||_2, for every fine-tuned run (bars, mean over seeds), from the "
        "model statistics stage (task parameters, metric l2_distance_from_base). Error bars are 95% "
        "bootstrap intervals over seeds where more than one seed was trained."
    ),
    # from the model-statistics stage JSONs, not the summary
    "fig11_next_token": (
        "Figure 11, tail of the next-token distribution: for one prompt (the paper's \"Give me a "
        "single-digit number\"), the probabilities of each model's most likely next tokens (log "
        "scale), one panel per run (by default CE, CE + Entropy and GEM), from the model statistics "
        "stage (field next_token of its JSON). Hatched grey bars beside them show the world's true "
        "answer distribution when it is known. The red dotted line marks the paper's threshold of "
        "1e-4; tokens are in the same order in every panel (world answers first). A missing bar means "
        "the token is not among that model's top tokens."
    ),
    # from results/claims.csv, not the summary
    "claims_forest": (
        "The paper's qualitative claims on our runs, one row per claim (results/claims.csv): the paired "
        "difference between the claim's two runs with its 95% paired-bootstrap interval, signed so that "
        "the paper's claimed direction points right (for a claim that A is lower than B, B − A is drawn). "
        "The line at 0 is no difference. Each verdict is written and coloured at its row: supported "
        "(interval right of 0), contradicted (left of 0), inconclusive (across 0), untestable (no "
        "interval drawn; a side missing, or both at the metric's floor or ceiling). Differences in "
        "percentage points and in nats (entropy) are in separate panels with their own axes."
    ),
    # needs more than one model
    "fig12_model_gains": (
        "Figure 12, scalability: for each model, the difference GEM − CE (percentage points) on headline "
        "metrics from the evaluation stages: chat win rate with one sample and best-of-N at the largest "
        "N, pass@k on code, majority-vote accuracy on math and SBERT diversity. Bars above zero favour "
        "GEM. Differences of seed means; no interval is drawn because the runs' intervals are not paired. "
        "Where a model's reward model was trained here, the title gives its held-out pair accuracy (%) on chat."
    ),
}
FIGURE_NAMES = tuple(FIGURE_CAPTIONS)

#: the objectives comparison's figures (config/objectives.yaml, report.comparison: true;
#: gemsft.report.comparison): drawn only when the comparison is on, so not among FIGURE_NAMES, which the
#: default DAG draws all of (but Figure 12)
COMPARISON_FIGURE_CAPTIONS = {
    "objectives_frontier": (
        "The quality-diversity frontier of the training objectives: one point per fine-tuned run "
        "(objective and beta, averaged over seeds), CE outlined in black with dashed lines through its "
        "values. y is the best-of-32 win rate (%) on chat, under the world's oracle reward (the answers' "
        "true quality; metric oracle_win_rate) in the embedded world and under the reward model (win_rate) "
        "with real data, as the claims judge quality; x is the diversity of the same chat samples: left "
        "Sentence-BERT diversity (100 x (1 - mean pairwise cosine similarity)), right the Vendi score (the "
        "effective number of distinct responses among the samples of a prompt). Error bars in both "
        "directions are the summary's 95% bootstrap intervals over prompts and seeds; the paired verdicts "
        "against CE are in results/comparison.csv."
    ),
    "objectives_pass_at_k": (
        "pass@k (%, unbiased estimator 1 - C(n-c,k)/C(n,k)) against the number of samples k (log axis) for "
        "every training objective, one line per run (objective and beta, averaged over seeds), CE drawn "
        "thicker in black outline, on the code task the claims judge pass@k on (the world's code family; "
        "HumanEval with real data), from the code evaluation stage. Shaded bands are 95% bootstrap "
        "intervals over problems and seeds; the paired differences against CE at k = 1, 10 and 100 are in "
        "results/comparison.csv."
    ),
}
COMPARISON_FIGURE_NAMES = tuple(COMPARISON_FIGURE_CAPTIONS)
