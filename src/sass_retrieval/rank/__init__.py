"""The pre-ranker (COLD-style): a small cross-feature model that rescores each scenario's retrieved top-K.

The two-tower retrieval models meet user and item only in a final inner product, so no cross feature
(how often this user clicked this tag, this author) reaches them. The pre-ranker reads exactly those
counts, computed from the training window's exposures, and reorders retrieval's candidates per request.

- ``features``: the feature catalogue, the counts they come from (:class:`~.features.RankStats`, fast
  sorted-key lookups for serving) and leakage-free training rows.
- ``model``: the network (field vectors, an SE block whose weights are the features' importance, an MLP).
- ``train``: seeded training with early stopping on validation GAUC.
- ``select``: COLD's feature selection: importance, per-request latency, the best set within a budget.
"""
