"""The caching lever: replay the traffic under each provider's prompt-caching rules.

Per stream (one model, one account where the log names it) and in time order, each request's prompt
is looked up in a simulated cache of token-block prefix hashes (advisor.prefix), under the rules in
rules/prices: automatic caching (every prompt past the minimum is written; the longest cached
prefix is read, counted in the provider's increments) or explicit breakpoints at message
boundaries (written at the write price, read at the cached price), TTL, refresh-on-hit. For every
template, the provider's options (default TTL, 1 h TTL, extended retention, caching off where it is
opt-in) are replayed and priced, and the cheapest is kept (`rules/caching.yaml` sets the margin).

Approximations, all stated in details.assumptions:
- Token counts are ours (tiktoken, the model's encoding or o200k_base for other tokenizers, or
  4-byte pseudo-tokens without encoding files; plus one role marker per message). Counts that
  are not exact are scaled to the logged usage of the same requests (`token_counts`) and the
  figure is also given at the low and high scales; cached tokens are clipped so they
  never exceed the logged input_tokens.
- Caches are unbounded in size and never evicted before the TTL; routing overflow (OpenAI sends a
  prefix hotter than ~15 requests/minute to several machines) is not modelled.
- Explicit breakpoints are read only where they are placed (Anthropic also looks back up to 20
  blocks), so reads can only be understated.
- A request keeps its logged cache outcome where that read more than the replay (e.g. a cache warm
  before the log starts), so the lever never makes a request dearer than it was.

The package: `policy` (rules/caching.yaml), `replay` (the options replayed per model), `prefix`
(the token-block prefix model), `prefix_order` (variable text before a stable prefix),
`token_counts` (how tokens were counted and calibrated), `lever` (CachingLever: the state
replay), `details` and `models` (levers[id=caching] in analysis.json).
"""

from advisor.levers.caching.lever import CachingLever
from advisor.levers.caching.models import CachingDetails, CachingResult, CachingRisk
from advisor.levers.caching.policy import CachingPolicy, load_policy

__all__ = [
    "CachingDetails",
    "CachingLever",
    "CachingPolicy",
    "CachingResult",
    "CachingRisk",
    "load_policy",
]
