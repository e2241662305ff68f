# Report (Section 6's tables, Figures 2-12): every number with a 95% bootstrap interval over prompts
# (and seeds), the paper's tables beside the paper's own numbers, the data table (what real_data
# dropped, what the length policy left out), and the figures. These rules read only the outputs of
# other stages, so editing a table or figure module or a `report:` option re-runs them and nothing
# upstream.


# One tidy table of every stage's aggregate rows (with each forgetting metric's alignment tax), for
# users who want the numbers without intervals.
rule metrics_table:
    input:
        stage_outputs(),
    output:
        "results/metrics.csv",
    log:
        "results/logs/metrics_table.log",
    benchmark:
        "results/benchmarks/metrics_table.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/metrics_table.py"


rule summary:
    input:
        stage_outputs(),
    output:
        "results/summary.csv",
    params:
        resamples=REPORT["bootstrap_resamples"],
        level=REPORT["confidence_level"],
        seed=REPORT["bootstrap_seed"],
    log:
        "results/logs/report/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/summarize.py"


# The paper's claims judged by a paired bootstrap on the stages' per-item values
# (gemsft.report.verdicts): supported, contradicted, inconclusive or untestable, with the reason.
rule claims:
    input:
        stage_outputs(),
    output:
        "results/claims.csv",
    params:
        source=config["data"]["source"],
        knowledge_tasks=REPORT["knowledge_tasks"],
        resamples=REPORT["bootstrap_resamples"],
        level=REPORT["confidence_level"],
        seed=REPORT["bootstrap_seed"],
    log:
        "results/logs/report/claims.log",
    benchmark:
        "results/benchmarks/claims.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/claims.py"


# Every objective against CE (config/objectives.yaml, report.comparison: true): the paired difference on
# quality, diversity, pass@k, math and forgetting, and the verdict on "X is more diverse than CE at no
# quality cost" (gemsft.report.comparison; its margin is the module's, not a setting).
rule comparison:
    input:
        stages=stage_outputs(),
        modules=COMPARISON_MODULES,
    output:
        COMPARISON_CSV,
    params:
        source=config["data"]["source"],
        knowledge_tasks=REPORT["knowledge_tasks"],
        resamples=REPORT["bootstrap_resamples"],
        level=REPORT["confidence_level"],
        seed=REPORT["bootstrap_seed"],
    log:
        "results/logs/report/comparison.log",
    benchmark:
        "results/benchmarks/comparison.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/comparison.py"


rule table:
    input:
        unpack(table_inputs),
    output:
        csv=report("results/tables/{table}.csv", caption="../report/table.rst",
                   category=lambda wildcards: table_category(wildcards.table), labels={"table": "{table}"}),
        md="results/tables/{table}.md",
        tex="results/tables/{table}.tex",
        provenance="results/tables/{table}.provenance.json",
    wildcard_constraints:
        table="|".join(TABLE_NAMES),
    params:
        caption=lambda wildcards: TABLE_CAPTIONS[wildcards.table],
        # the data table names the policy its SFT column counts
        length_policy=lambda wildcards: ({"policy": config["train"]["length_policy"],
                                          "max_length": config["train"]["max_length"]}
                                         if wildcards.table == DATA_TABLE else None),
    log:
        "results/logs/report/table_{table}.log",
    benchmark:
        "results/benchmarks/table/{table}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/make_table.py"


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report("figures/{figure}.png", caption="../report/figure.rst",
                   category=lambda wildcards: figure_category(wildcards.figure), labels={"figure": "{figure}"}),
        other=[f"figures/{{figure}}.{ext}" for ext in REPORT["extra_formats"]],
        # what the figure plots, as a table (gemsft.report.figures.plotted)
        data="figures/{figure}.csv",
        provenance="figures/{figure}.provenance.json",
    wildcard_constraints:
        figure="|".join(ALL_FIGURE_NAMES),
    params:
        caption=lambda wildcards: ALL_FIGURE_CAPTIONS[wildcards.figure],
        dpi=REPORT["dpi"],
        options=figure_options,
    log:
        "results/logs/report/{figure}.log",
    benchmark:
        "results/benchmarks/figure/{figure}.tsv"
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow/scripts/make_figure.py"
