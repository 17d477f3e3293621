"""advisor: offline LLM traffic-log analyzer and cost-optimisation advisor."""

__version__ = "0.1.0"
