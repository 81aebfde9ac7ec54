"""mIoU follows the official Cityscapes rules, on cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from alseg_core.metrics import confusion_matrix, iou_per_class, mean_iou, scores_from_confusion

IGN = 255


def test_perfect_prediction_over_present_classes_only():
    t = np.array([0, 0, 1, 1])
    # classes 2..18 absent from both -> left out; mean over {0, 1} = 1
    assert mean_iou(t, t) == 1.0


def test_ignore_ground_truth_pixels_are_dropped():
    t = np.array([0, 1, IGN, IGN])
    p = np.array([0, 1, 1, 5])  # the wrong predictions sit on ignored pixels
    assert mean_iou(t, p) == 1.0


def test_prediction_of_ignore_is_a_miss_for_the_true_class():
    t = np.array([0, 0, 0, 0])
    p = np.array([0, 0, IGN, 19])  # 19 is outside the 19 classes
    # class 0: TP=2, FN=2, FP=0 -> 0.5; no other class occurs
    iou = iou_per_class(confusion_matrix(t, p))
    assert iou[0] == 0.5 and np.isnan(iou[1:]).all()
    assert mean_iou(t, p) == 0.5


def test_class_predicted_but_absent_from_ground_truth_scores_zero_and_counts():
    t = np.array([0, 0, 0, 0])
    p = np.array([0, 0, 0, 3])
    # class 0: TP=3, FN=1 -> 0.75; class 3: TP=0, FP=1 -> 0; mean = 0.375
    iou = iou_per_class(confusion_matrix(t, p))
    assert iou[0] == 0.75 and iou[3] == 0.0
    assert mean_iou(t, p) == pytest.approx(0.375)


def test_two_class_hand_case():
    t = np.array([[0, 0, 1], [1, 1, IGN]])
    p = np.array([[0, 1, 1], [0, 1, 0]])
    # class 0: TP=1 FP=1 FN=1 -> 1/3 ; class 1: TP=2 FP=1 FN=1 -> 2/4
    scores = scores_from_confusion(confusion_matrix(t, p))
    assert scores.iou[0] == pytest.approx(1 / 3) and scores.iou[1] == pytest.approx(0.5)
    assert scores.miou == pytest.approx((1 / 3 + 0.5) / 2)
    assert scores.pixel_accuracy == pytest.approx(3 / 5) and scores.n_pixels == 5


def test_confusion_accumulates_over_images():
    a = confusion_matrix(np.array([0, 1]), np.array([0, 0]))
    b = confusion_matrix(np.array([1, 1]), np.array([1, 1]))
    both = confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]))
    np.testing.assert_array_equal(a + b, both)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3), np.zeros(4))
