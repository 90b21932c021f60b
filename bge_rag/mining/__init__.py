"""bge_rag.mining: fine-tuning data preparation, FlagEmbedding's scripts done reproducibly.

- :func:`mine_hard_negatives` (``bge-rag mine-negatives``): ``scripts/hn_mine.py``;
- :func:`add_reranker_scores` (``bge-rag score-pairs``): ``scripts/add_reranker_score.py``.
"""

from __future__ import annotations

from .negatives import DEFAULT_SEED, FalseNegativeGuard, MiningSummary, mine_hard_negatives
from .scores import ScoringSummary, add_reranker_scores

__all__ = [
    "DEFAULT_SEED",
    "FalseNegativeGuard",
    "MiningSummary",
    "ScoringSummary",
    "add_reranker_scores",
    "mine_hard_negatives",
]
