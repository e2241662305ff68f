"""Report (rules/report.smk): the summary with intervals, the paper's tables, the figures, the claims' verdicts.

Importing this package is light (no pandas, matplotlib or torch): the rules read names and captions from
`gemsft.report.registry`."""
