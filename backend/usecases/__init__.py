"""What a user does with OMDP, written once for every front-end.

The CLI verbs (`backend.cli`) and the TUI (`omdp_tui`) call these functions and only print
or show what they return: a workflow (open or create a session, estimate, profile, rank,
export, measure links) has one home here, so the two front-ends cannot drift apart. Each
module is one thing a user does, named by the noun it acts on:

- `sessions`: open, resume or create a session; change its chain; list recent ones
- `candidates`: choose the positions the model may be cut at
- `plans`: the segments a plan measures and how long that takes (the one estimator)
- `runs`: measure the plan on every device (the profiler, one claim per run)
- `rankings`: rank a session's partitions under given link values
- `exports`: write chosen partitions as one document shape (docs/export.md)
- `devices`: check that a device answers; measure the chain's links
- `traces`: replay a bandwidth trace over a session's ranking
- `demo`: the demo session's model, chain and settings

Layers: front-ends → `backend.usecases` → the domain packages (model, profiling, solver,
remote, device). Nothing here imports a front-end, argparse or textual; options arrive as
typed dataclasses.
"""
