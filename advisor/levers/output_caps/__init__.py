"""The output caps lever (`levers[id=output_caps]`): max_tokens caps per feature and template at a
high percentile of the visible output they answered, reasoning budgets for easy work on reasoning
models, runaway outputs flagged; policy in rules/output_caps.yaml.

`policy` loads the rules, `core` decides and replays in DuckDB, `models` holds the analysis.json
models, `lever` reports.
"""

from advisor.levers.output_caps.lever import OutputCapsLever

__all__ = ["OutputCapsLever"]
