"""SparseVector: canonical form, converters, equality; Encoded and Ranked are frozen."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from bge_core import Encoded, InvalidInputError, Ranked, SparseVector


def test_sparse_vector_sorts_and_types():
    v = SparseVector(np.array([9, 2, 5]), np.array([0.5, 1.5, 0.25], dtype=np.float64))
    assert v.indices.tolist() == [2, 5, 9] and v.values.tolist() == [1.5, 0.25, 0.5]
    assert v.indices.dtype == np.int64 and v.values.dtype == np.float32
    assert len(v) == 3 and not v.indices.flags.writeable


def test_converters_are_plain_python():
    v = SparseVector.from_dict({"7": 0.5, 3: 2.0})
    d = v.to_dict()
    assert d == {3: 2.0, 7: 0.5}
    assert all(type(k) is int and type(w) is float for k, w in d.items())
    q = v.to_qdrant()
    assert q == {"indices": [3, 7], "values": [2.0, 0.5]}
    json.dumps(d)
    json.dumps(q)


def test_invalid_sparse_vectors():
    with pytest.raises(InvalidInputError, match="as many indices as values"):
        SparseVector(np.array([1, 2]), np.array([1.0]))
    with pytest.raises(InvalidInputError, match="unique"):
        SparseVector(np.array([3, 1, 3]), np.array([1.0, 2.0, 3.0]))


def test_equality_and_dot():
    a = SparseVector.from_dict({1: 1.0, 2: 2.0})
    assert a == SparseVector.from_dict({2: 2.0, 1: 1.0})
    assert a != SparseVector.from_dict({1: 1.0})
    assert hash(a) == hash(SparseVector.from_dict({2: 2.0, 1: 1.0}))
    assert a.dot(SparseVector.from_dict({2: 3.0, 5: 1.0})) == pytest.approx(6.0)
    assert a.dot(SparseVector.from_dict({})) == 0.0


def test_results_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Encoded().dense = np.zeros(3)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Ranked(0, 1.0, "x").score = 2.0  # type: ignore[misc]
