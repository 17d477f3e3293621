"""The levers: each one a policy replayed over the logged requests, one contract for all.

`advisor.levers.base` is the contract, `advisor.levers.registry` lists the levers in DESIGN.md
section 1 order, and `advisor.levers.tables` declares the working tables they leave in the store.
"""
