"""The labelled set: a value with a history, written whole or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from alseg_core import storage
from alseg_core.labels import (
    ImageLabels,
    LabelState,
    load_state,
    merge_masks,
    read_mask,
    state_url,
    write_labelled_set,
)


def test_merge_unions_labels_and_the_same_delivery_twice_changes_nothing():
    a = LabelState().merged(
        "d1", 0, 5, [ImageLabels("x", frozenset({1}), False, frozenset({"i1"}))]
    )
    b = a.merged("d2", 1, 3, [ImageLabels("x", frozenset({2}), False, frozenset({"s0_0"}))])
    assert b.images["x"].regions == {1, 2} and b.images["x"].instance_keys == {"i1", "s0_0"}
    assert b.total_cost == 8 and [h.delivery_id for h in b.history] == ["d1", "d2"]
    assert b.merged("d2", 1, 3, [ImageLabels("y", full_image=True)]) is b
    assert a.labelled_regions("x") == {1} and not a.is_fully_labelled("x")  # a is unchanged


def test_state_round_trips_through_json_and_wrong_format_is_named():
    state = LabelState().merged(
        "d", 2, 7, [ImageLabels("x", frozenset({3}), True, frozenset({"i9"}))], est_cost=4
    )
    assert LabelState.from_json(state.to_json()) == state
    with pytest.raises(ValueError, match=r"s.json: not a labelled set \(format 'other'"):
        LabelState.from_json({"format": "other"}, source="s.json")


def test_merge_masks_keeps_earlier_labels():
    old = np.array([[1, 255], [255, 255]], np.uint8)
    new = np.array([[2, 3], [255, 4]], np.uint8)
    np.testing.assert_array_equal(merge_masks(old, new), [[1, 3], [255, 4]])
    with pytest.raises(ValueError, match="mask shape"):
        merge_masks(old, np.zeros((3, 3), np.uint8))


def test_written_set_reads_back_and_copies_masks_it_does_not_replace(tmp_path):
    first = str(tmp_path / "l0")
    state = LabelState().merged("d", 0, 1, [ImageLabels("x", full_image=True)])
    write_labelled_set(first, state, {"x": np.full((2, 3), 5, np.uint8)})
    assert load_state(first) == state
    second = str(tmp_path / "l1")
    grown = state.merged("e", 1, 1, [ImageLabels("y", full_image=True)])
    write_labelled_set(second, grown, {"y": np.zeros((2, 3), np.uint8)}, copy_from=first)
    assert read_mask(second, "x").tolist() == [[5, 5, 5]] * 2  # copied from the first set
    assert load_state(None) == LabelState()


def test_a_set_without_state_json_is_refused(tmp_path):
    root = str(tmp_path / "l")
    write_labelled_set(root, LabelState(), {})
    storage.remove(state_url(root))
    with pytest.raises(ValueError, match="incomplete labelled set"):
        load_state(root)
