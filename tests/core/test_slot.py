"""bge_core.slot.EngineSlot: rebuilt when the settings change, forked by copies, empty after a pickle."""

from __future__ import annotations

import copy
import pickle

import pytest

from bge_core.slot import EngineSlot, settings_key


def test_settings_key_ignores_option_order_and_takes_unhashable_values():
    a, b = settings_key("m", {"x": [1], "y": {"k": 2}}), settings_key("m", {"y": {"k": 2}, "x": [1]})
    assert a == b and hash(a) == hash(b)
    assert a != settings_key("m", {"x": [2], "y": {"k": 2}}) and a != settings_key("other", {"x": [1], "y": {"k": 2}})


def test_get_builds_once_per_key_and_again_when_it_changes():
    slot, built = EngineSlot(), []
    build = lambda: built.append(1) or object()  # noqa: E731
    first = slot.get("a", build)
    assert slot.get("a", build) is first and len(built) == 1
    assert slot.get("b", build) is not first and len(built) == 2


def test_load_calls_the_factory_with_the_model_and_options():
    calls = []
    slot = EngineSlot()
    engine = slot.load(lambda model, **options: calls.append((model, options)) or object(), "m", {"x": 1})
    assert slot.load(lambda model, **options: pytest.fail("built again"), "m", {"x": 1}) is engine
    assert calls == [("m", {"x": 1})]


def test_names_are_separate_entries():
    slot = EngineSlot()
    engine = slot.get("k", object)
    index = slot.get("k", object, name="index")
    assert index is not engine and slot.get("k", object) is engine


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy, EngineSlot.fork])
def test_copies_share_values_but_not_the_slot(how):
    slot = EngineSlot()
    engine = slot.get("a", object)
    clone = how(slot)
    assert clone is not slot and clone.loaded and clone.get("a", object) is engine
    clone.get("b", object)  # the copy moves on: the original keeps its engine
    assert slot.get("a", lambda: pytest.fail("evicted")) is engine


def test_pickle_gives_an_empty_slot_and_every_slot_is_equal():
    slot = EngineSlot()
    slot.get("a", object)
    again = pickle.loads(pickle.dumps(slot))
    assert slot.loaded and not again.loaded
    assert again == slot and hash(again) == hash(slot) and slot != object()
