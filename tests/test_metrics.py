"""fastnn.metrics: hand-worked cases, scikit-learn as the oracle on random data and on the edge
cases (a class never predicted, a single class, ties, weights, string labels), and bad inputs."""
import math
import warnings

import numpy as np
import pytest

import fastnn
import fastnn.metrics as M


def sklearn_metrics():
    return pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")


def quiet(fn, *args, **kwargs):
    """Call a scikit-learn function, silencing its UndefinedMetricWarning (fastnn gives no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# hand-worked values (no oracle needed)

def test_hand_worked_binary_case():
    y_true = [1, 1, 1, 0, 0, 0, 0, 1]
    y_pred = [1, 0, 1, 1, 0, 0, 0, 1]  # tp 3, fn 1, fp 1, tn 3
    assert M.accuracy(y_true, y_pred) == 0.75
    assert M.precision(y_true, y_pred) == 0.75
    assert M.recall(y_true, y_pred) == 0.75
    assert M.f1_score(y_true, y_pred) == 0.75
    assert M.precision(y_true, y_pred, pos_label=0) == 0.75
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred), [[3, 1], [1, 3]])
    assert M.confusion_matrix(y_true, y_pred).dtype == np.int64


def test_hand_worked_multiclass_averages():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    # per class: precision 2/2, 1/2, 1/2; recall 2/3, 1/2, 1/1; support 3, 2, 1
    np.testing.assert_allclose(M.precision(y_true, y_pred, average=None), [1, 0.5, 0.5])
    np.testing.assert_allclose(M.recall(y_true, y_pred, average=None), [2 / 3, 0.5, 1])
    assert M.precision(y_true, y_pred, average="macro") == pytest.approx(2 / 3)
    assert M.recall(y_true, y_pred, average="weighted") == pytest.approx((2 + 1 + 1) / 6)
    assert M.f1_score(y_true, y_pred, average="micro") == pytest.approx(4 / 6)  # = accuracy
    f1 = [2 * 2 / (2 * 2 + 0 + 1), 2 * 1 / (2 + 1 + 1), 2 * 1 / (2 + 1 + 0)]
    assert M.f1_score(y_true, y_pred, average="macro") == pytest.approx(np.mean(f1))


def test_zero_division_gives_the_chosen_value_without_warning():
    y_true, y_pred = [0, 1, 2, 2], [0, 0, 0, 0]  # classes 1 and 2 never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(M.precision(y_true, y_pred, average=None), [0.25, 0, 0])
        np.testing.assert_allclose(M.precision(y_true, y_pred, average=None, zero_division=1), [0.25, 1, 1])
        assert math.isnan(M.precision(y_true, y_pred, average=None, zero_division=np.nan)[1])
        assert M.precision(y_true, y_pred, average="macro", zero_division=np.nan) == 0.25  # nan left out
        assert M.precision(y_true, y_pred, average="macro", zero_division="warn") == pytest.approx(0.25 / 3)


def test_roc_auc_hand_worked_with_ties():
    # pairs (positive, negative) ranked right count 1, tied pairs 1/2:
    # positives 0.35, 0.8, 0.4; negatives 0.1, 0.4, 0.9 -> 0.35: 1; 0.8: 2; 0.4: 1 + 0.5 -> 4.5 / 9
    assert M.roc_auc_score([0, 0, 1, 1, 1, 0], [0.1, 0.4, 0.35, 0.8, 0.4, 0.9]) == pytest.approx(0.5)
    assert M.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert M.roc_auc_score([0, 1], [0.5, 0.5]) == 0.5
    assert M.roc_auc_score(["no", "yes", "yes"], [3.0, -1.0, 5.0]) == 0.5  # the greater label is positive


def test_top_k_hand_worked():
    scores = [[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]]
    y_true = [2, 0, 1]
    assert M.top_k_accuracy(y_true, scores, k=1) == 0.0
    # sample 1: the tie between classes 0 and 1 ranks the higher column first, so class 0 is third
    assert M.top_k_accuracy(y_true, scores, k=2) == pytest.approx(1 / 3)
    assert M.top_k_accuracy(y_true, scores, k=3) == 1.0
    assert M.top_k_accuracy(y_true, scores, k=3, normalize=False) == 3.0


# ---------------------------------------------------------------------------------------------
# input forms

def test_lists_arrays_and_tensors_agree():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 50)
    logits = rng.standard_normal((50, 4)).astype(np.float32)
    y_pred = logits.argmax(axis=1)
    expected = M.accuracy(y_true, y_pred)
    assert M.accuracy(y_true.tolist(), y_pred.tolist()) == expected
    assert M.accuracy(fastnn.tensor(y_true), fastnn.tensor(y_pred)) == expected
    assert M.accuracy(y_true, fastnn.tensor(logits, requires_grad=True)) == expected  # scores: argmax
    assert M.accuracy(np.eye(4)[y_true], logits) == expected                        # one-hot y_true
    assert M.f1_score(y_true, logits, average="macro") == M.f1_score(y_true, y_pred, average="macro")
    assert M.top_k_accuracy(fastnn.tensor(y_true), fastnn.tensor(logits), k=1) == expected
    np.testing.assert_array_equal(M.confusion_matrix(y_true, logits), M.confusion_matrix(y_true, y_pred))
    assert M.accuracy(y_true, y_pred.astype(np.float64)) == expected  # integral floats are labels
    assert M.accuracy(y_true, y_pred, normalize=False) == expected * 50


# ---------------------------------------------------------------------------------------------
# scikit-learn as the oracle

def random_cases():
    """(name, y_true, y_pred, sample_weight) covering the edge cases."""
    rng = np.random.default_rng(42)
    cases = []
    for i, (n, c) in enumerate([(1, 2), (7, 2), (30, 3), (50, 5), (100, 7), (13, 4)]):
        y_true = rng.integers(0, c, n)
        y_pred = rng.integers(0, c, n)
        cases.append((f"random n={n} c={c}", y_true, y_pred, None))
        cases.append((f"weighted n={n} c={c}", y_true, y_pred, rng.random(n)))
    y_true = rng.integers(0, 4, 40)
    y_pred = np.where(y_true == 3, 0, y_true)  # class 3 never predicted
    cases.append(("class never predicted", y_true, y_pred, None))
    cases.append(("class never true", y_pred, y_true, None))
    cases.append(("single class everywhere", np.ones(9, int), np.ones(9, int), None))
    cases.append(("single class, all wrong", np.zeros(9, int), np.ones(9, int), None))
    cases.append(("perfect", y_true, y_true, None))
    names = np.array(["cat", "dog", "eel", "fox"])
    cases.append(("string labels", names[y_true], names[y_pred], rng.random(40)))
    return cases


CASES = random_cases()


@pytest.mark.parametrize("name, y_true, y_pred, weight", CASES, ids=[c[0] for c in CASES])
def test_precision_recall_f1_match_sklearn(name, y_true, y_pred, weight):
    skm = sklearn_metrics()
    averages = ["binary", "micro", "macro", "weighted", None]
    for i, (average, zero_division) in enumerate(zip(averages * 3, [0] * 5 + [1.0] * 5 + [np.nan] * 5)):
        ours, theirs = [(M.precision, skm.precision_score), (M.recall, skm.recall_score),
                        (M.f1_score, skm.f1_score)][i % 3]
        kwargs = dict(average=average, sample_weight=weight, zero_division=zero_division)
        if np.asarray(y_true).dtype.kind == "U":
            kwargs["pos_label"] = "dog"
        try:
            expected = quiet(theirs, y_true, y_pred, **kwargs)
        except ValueError:
            with pytest.raises(ValueError):
                ours(y_true, y_pred, **kwargs)
            continue
        np.testing.assert_allclose(ours(y_true, y_pred, **kwargs), expected, rtol=1e-12, equal_nan=True,
                                   err_msg=f"{ours.__name__} {kwargs}")


@pytest.mark.parametrize("labels", [[0, 1, 7], [2, 0]])
def test_labels_subset_matches_sklearn(labels):
    skm = sklearn_metrics()
    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    for average in ("micro", "macro", "weighted", None):
        for ours, theirs in [(M.precision, skm.precision_score), (M.f1_score, skm.f1_score)]:
            np.testing.assert_allclose(ours(y_true, y_pred, labels=labels, average=average),
                                       quiet(theirs, y_true, y_pred, labels=labels, average=average), rtol=1e-12)


@pytest.mark.parametrize("name, y_true, y_pred, weight", CASES, ids=[c[0] for c in CASES])
def test_accuracy_and_confusion_matrix_match_sklearn(name, y_true, y_pred, weight):
    skm = sklearn_metrics()
    assert M.accuracy(y_true, y_pred, sample_weight=weight) == pytest.approx(
        skm.accuracy_score(y_true, y_pred, sample_weight=weight), rel=1e-12)
    present = np.union1d(y_true, y_pred)
    for labels, normalize in [(None, None), (None, "true"), (present[::-1], "pred"), (present[:1], "all"),
                              (present[::-1], None)]:
        expected = quiet(skm.confusion_matrix, y_true, y_pred, labels=labels, sample_weight=weight,
                         normalize=normalize)
        got = M.confusion_matrix(y_true, y_pred, labels=labels, sample_weight=weight, normalize=normalize)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert got.dtype == expected.dtype


@pytest.mark.parametrize("seed", range(4))
def test_top_k_matches_sklearn_with_ties(seed):
    skm = sklearn_metrics()
    rng = np.random.default_rng(seed)
    n, c = 80, 3 + seed
    scores = rng.integers(0, 4, (n, c)) / 4.0  # many ties
    y_true = rng.integers(0, c, n)
    weight = rng.random(n) if seed % 2 else None
    for k in range(1, c + 1):
        assert M.top_k_accuracy(y_true, scores, k=k, sample_weight=weight) == pytest.approx(
            quiet(skm.top_k_accuracy_score, y_true, scores, k=k, labels=np.arange(c), sample_weight=weight),
            rel=1e-12)
    labels = np.array(["a", "b", "c", "d", "e", "f"][:c])
    assert M.top_k_accuracy(labels[y_true], scores, k=2, labels=labels) == pytest.approx(
        skm.top_k_accuracy_score(labels[y_true], scores, k=2, labels=labels))


@pytest.mark.parametrize("seed", range(6))
def test_binary_roc_auc_matches_sklearn(seed):
    skm = sklearn_metrics()
    rng = np.random.default_rng(seed)
    n = [2, 5, 30, 200, 1000, 17][seed]
    y_true = rng.integers(0, 2, n)
    y_true[:2] = [0, 1]
    logits = rng.standard_normal(n) * 3
    tied = np.round(logits)  # ties
    weight = rng.random(n) if seed % 2 else None
    for scores in (logits, tied, 1 / (1 + np.exp(-logits))):
        expected = skm.roc_auc_score(y_true, scores, sample_weight=weight)
        assert M.roc_auc_score(y_true, scores, sample_weight=weight) == pytest.approx(expected, rel=1e-12)
    two_columns = np.stack([-logits, logits], axis=1)
    assert M.roc_auc_score(y_true, two_columns) == pytest.approx(skm.roc_auc_score(y_true, logits))
    assert M.roc_auc_score(fastnn.tensor(y_true), fastnn.tensor(logits)) == pytest.approx(
        skm.roc_auc_score(y_true, logits.astype(np.float32)), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_one_vs_rest_roc_auc_matches_sklearn(seed):
    skm = sklearn_metrics()
    rng = np.random.default_rng(seed)
    n, c = 120, 3 + seed
    y_true = rng.integers(0, c, n)
    y_true[:c] = np.arange(c)
    logits = rng.standard_normal((n, c))
    if seed % 2:
        logits = np.round(logits)  # ties
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    weight = rng.random(n) if seed >= 2 else None
    for average in ("macro", "weighted", "micro", None):
        expected = skm.roc_auc_score(y_true, probs, multi_class="ovr", average=average, sample_weight=weight)
        np.testing.assert_allclose(M.roc_auc_score(y_true, probs, average=average, sample_weight=weight),
                                   expected, rtol=1e-12)
    names = np.array(list("vwxyzuv"[:c]))
    np.testing.assert_allclose(M.roc_auc_score(names[y_true], probs),
                               skm.roc_auc_score(names[y_true], probs, multi_class="ovr"), rtol=1e-12)


def test_roc_auc_with_a_missing_class_matches_sklearn():
    skm = sklearn_metrics()
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 50)  # class 3 absent
    probs = rng.dirichlet(np.ones(4), 50)
    for average in ("macro", "weighted", None):
        expected = quiet(skm.roc_auc_score, y_true, probs, multi_class="ovr", labels=[0, 1, 2, 3], average=average)
        np.testing.assert_allclose(M.roc_auc_score(y_true, probs, labels=[0, 1, 2, 3], average=average), expected,
                                   equal_nan=True)
    assert math.isnan(M.roc_auc_score([1, 1, 1], [0.2, 0.5, 0.9]))  # one class: undefined, as in sklearn
    assert math.isnan(quiet(skm.roc_auc_score, [1, 1, 1], [0.2, 0.5, 0.9]))


# ---------------------------------------------------------------------------------------------
# bad inputs

@pytest.mark.parametrize("call, match", [
    (lambda: M.accuracy([0, 1, 1], [0, 1]), "same number of samples, got 3 and 2"),
    (lambda: M.accuracy([], []), "empty"),
    (lambda: M.accuracy([0, 1], [0.2, 0.7]), "continuous values"),
    (lambda: M.accuracy([0, 1], np.zeros((2, 2, 2))), r"shape \(N,\) \(labels\) or \(N, C\)"),
    (lambda: M.accuracy([[0.5, 0.5], [1, 0]], [0, 1]), "one-hot"),
    (lambda: M.accuracy(3, [3]), "scalar"),
    (lambda: M.accuracy([0, 1], [0, 1], sample_weight=[1.0]), r"sample_weight must have shape \(2,\)"),
    (lambda: M.accuracy([0, 1], [0, 1], sample_weight=[1.0, -1.0]), "non-negative"),
    (lambda: M.accuracy(["a", "b"], [0, 1]), "mix string and numeric"),
    (lambda: M.precision([0, 1, 2], [0, 1, 2]), "average='binary' needs two classes"),
    (lambda: M.recall([0, 2, 2], [0, 2, 0]), "pos_label=1 is not one of the labels"),
    (lambda: M.f1_score([0, 1], [0, 1], average="samples"), "average must be one of"),
    (lambda: M.f1_score([0, 1], [0, 1], zero_division=0.5), "zero_division must be"),
    (lambda: M.precision([0, 1], [0, 1], labels=[0, 0], average="macro"), "duplicates"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], labels=[5]), "none of labels"),
    (lambda: M.confusion_matrix([0, 1], [0, 1], normalize="rows"), "normalize must be"),
    (lambda: M.top_k_accuracy([0, 1], [0.3, 0.7]), r"shape \(N, C\) with C >= 2"),
    (lambda: M.top_k_accuracy([0, 1], [[0.3, 0.7]]), "y_true has 2 samples but scores has 1 rows"),
    (lambda: M.top_k_accuracy([0, 1], [[0.3, 0.7], [0.1, 0.9]], k=3), r"k must be in \[1, 2\]"),
    (lambda: M.top_k_accuracy([0, 2], [[0.3, 0.7], [0.1, 0.9]], k=1), r"class indices in \[0, 2\)"),
    (lambda: M.roc_auc_score([0, 1, 1], [0.1, 0.2]), r"y_score must have shape \(3,\) or \(3, C\)"),
    (lambda: M.roc_auc_score([0, 1, 2], np.eye(3)[:, :2]), r"must have shape \(3, 3\)"),
    (lambda: M.roc_auc_score([0, 1, 2], np.eye(3), multi_class="raise"), "multi_class='ovr'"),
    (lambda: M.roc_auc_score([0, 1, 2], np.eye(3), multi_class="ovo"), "not supported"),
    (lambda: M.roc_auc_score([0, 1], [0.1, np.nan]), "NaN or infinity"),
    (lambda: M.roc_auc_score([0, 1], [0.1, 0.2], average="samples"), "average must be"),
    (lambda: M.roc_auc_score([0.5, 1.0], [0.1, 0.2]), "continuous"),
    (lambda: M.roc_auc_score([0, 1, 5], np.eye(3), labels=[0, 1, 2]), "not in labels"),
])
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("k", ["2", 1.5, True])
def test_non_int_k_is_a_type_error(k):
    with pytest.raises(TypeError, match="k must be an int"):
        M.top_k_accuracy([0, 1], [[0.3, 0.7], [0.1, 0.9]], k=k)
