"""Shared checks: sparse vectors with no nonzero weight are named before a store refuses them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from bge_core import EmptySparseVectorError, InvalidInputError, SparseVector
from bge_core.checks import check_sparse_weights

WEIGHTED = SparseVector.from_dict({7: 0.5, 12: 0.25})
EMPTY = SparseVector.from_dict({})


def test_weighted_vectors_pass():
    check_sparse_weights([WEIGHTED, WEIGHTED], ["a", "b"], advice="")
    check_sparse_weights([], [], advice="")


def test_every_weightless_document_is_named_with_its_text_and_the_advice():
    texts = ["fine", "", "also fine", "!!!"]
    with pytest.raises(EmptySparseVectorError) as caught:
        check_sparse_weights([WEIGHTED, EMPTY, WEIGHTED, EMPTY], texts, advice="Drop them.")
    message = str(caught.value)
    assert message.startswith(
        "2 of 4 documents have no token with a nonzero sparse weight: texts[1] (''), texts[3] ('!!!')."
    )
    assert "Milvus refuses a sparse vector without a nonzero weight" in message
    assert message.endswith("Drop them.")
    assert caught.value.indices == (1, 3)
    assert isinstance(caught.value, InvalidInputError) and isinstance(caught.value, ValueError)


def test_zero_weights_count_as_none_and_long_lists_are_shortened():
    zero = SparseVector(np.array([3]), np.array([0.0], dtype=np.float32))
    texts = [f"text {i} " + "x" * 60 for i in range(8)]
    with pytest.raises(EmptySparseVectorError, match=r"^1 of 1 documents has ") as caught:
        check_sparse_weights([zero], ["."], advice="")
    assert caught.value.indices == (0,)
    with pytest.raises(EmptySparseVectorError, match=r"texts\[4\] \('text 4 x+\.\.\.'\) and 3 more\. ") as caught:
        check_sparse_weights([EMPTY] * 8, texts, advice="")
    assert caught.value.indices == tuple(range(8))


def test_the_error_keeps_its_indices_through_pickle():
    error = EmptySparseVectorError("message", [2, 5])
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is EmptySparseVectorError and str(copy) == "message" and copy.indices == (2, 5)
