"""The partition solver; callers start at `backend.solver.ranking` (top_k and its types)."""
