"""Combining rankings: weighted reciprocal-rank fusion or a convex combination of normalised
scores, and MMR for diversity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray


def fuse_rankings(
    rankings: Mapping[str, Sequence[str]], weights: Mapping[str, float], k: int
) -> list[tuple[str, float]]:
    """Weighted RRF: each item scores sum(weight / (k + rank)) over the rankings it is in
    (rank from 1). Ties go to the smaller id, so the order is fully determined."""
    scores: dict[str, float] = {}
    for name, ranking in rankings.items():
        weight = weights.get(name, 1.0)
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def fuse_scores(
    scored: Mapping[str, Sequence[tuple[str, float]]],
    weights: Mapping[str, float],
    floors: Mapping[str, float],
) -> list[tuple[str, float]]:
    """A convex combination of normalised scores (Bruch et al., "An Analysis of Fusion
    Functions for Hybrid Retrieval", 2023): each list's scores are scaled to 0-1 between the
    least its scorer can give (``floors``: -1 for cosine similarity, 0 for BM25; the
    "theoretical min-max") and the list's best, then summed with the weights scaled to sum to
    1. An item a list did not return scores there as the list's last one did (at most that,
    since it was not returned). Ties go to the smaller id."""
    total = sum(weights.get(name, 1.0) for name in scored) or 1.0
    scores: dict[str, float] = {}
    lowest: dict[str, float] = {}
    normalised: dict[str, dict[str, float]] = {}
    for name, items in scored.items():
        if not items:
            continue
        floor = floors.get(name, min(s for _, s in items))
        span = max(s for _, s in items) - floor
        normalised[name] = {
            item: (score - floor) / span if span > 0 else 1.0 for item, score in items
        }
        lowest[name] = min(normalised[name].values())
    every = {item for values in normalised.values() for item in values}
    for item in every:
        scores[item] = sum(
            weights.get(name, 1.0) / total * values.get(item, lowest[name])
            for name, values in normalised.items()
        )
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def select_diverse(
    relevance: Sequence[float],
    vectors: NDArray[np.float32],
    count: int,
    trade_off: float,
) -> list[int]:
    """Maximal marginal relevance: greedily pick what is relevant and unlike what is already
    picked. ``relevance`` is scaled to 0-1 first; ``vectors`` are unit length. Returns indexes
    in pick order."""
    if not len(relevance):
        return []
    scores = np.asarray(relevance, dtype=np.float64)
    span = scores.max() - scores.min()
    scores = (scores - scores.min()) / span if span > 0 else np.ones_like(scores)
    similarity = vectors @ vectors.T
    picked: list[int] = []
    closest = np.full(len(scores), -np.inf)
    remaining = np.ones(len(scores), dtype=bool)
    for _ in range(min(count, len(scores))):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        value = trade_off * scores - (1.0 - trade_off) * penalty
        value[~remaining] = -np.inf
        best = int(np.argmax(value))
        picked.append(best)
        remaining[best] = False
        closest = np.maximum(closest, similarity[best])
    return picked
