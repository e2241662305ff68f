# gemsft: GEM (Li et al., ICLR 2025) end to end.
# data (world or real) -> pretrain -> SFT with every objective -> sampling -> reward scoring -> evaluation -> metrics table
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/train.smk"
include: "rules/sample.smk"
include: "rules/score.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
