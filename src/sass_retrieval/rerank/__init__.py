"""Controllable multi-objective re-ranking (seed 001): a generator builds each request's list from the top
candidates, a frozen evaluator scores lists, REINFORCE trains the generator against the evaluator, and a
hypernetwork maps the per-request preference weights to the generator's last layers (docs/rerank.md)."""
