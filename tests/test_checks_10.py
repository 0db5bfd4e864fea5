"""The exercise checks of lesson 10: right answers pass, wrong or memorised ones get a hint."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from check_helpers import Memorised, outcome
from scipy import stats
from sklearn.linear_model import LogisticRegression

from coursekit import checks, concepts, models

# ----------------------------------------------------------------------------- reference answers


def flat_rows(concept_activations, random_activations):
    rows = np.concatenate([concept_activations, random_activations])
    labels = np.r_[np.ones(len(concept_activations)), np.zeros(len(random_activations))]
    return rows.reshape(len(rows), -1), labels


def concept_direction(concept_activations, random_activations, classifier=LogisticRegression):
    rows, labels = flat_rows(concept_activations, random_activations)
    weights = classifier().fit(rows, labels).coef_[0]
    return weights / np.linalg.norm(weights)


def class_gradients(model, layer, images, class_index, score=lambda logits, k: logits[:, k], source=None):
    scores_model = source(model) if source else models.pre_softmax(model)
    both = keras.Model(scores_model.input, [scores_model.get_layer(layer).output, scores_model.output])
    with tf.GradientTape() as tape:
        activations, outputs = both(tf.constant(images))
        total = tf.reduce_sum(score(outputs, class_index))
    return tape.gradient(total, activations).numpy()


def tcav_score_from(gradients, cav):
    return np.mean(gradients.reshape(len(gradients), -1) @ cav > 0)


def two_sided_p(concept_scores, random_scores):
    return stats.ttest_ind(concept_scores, random_scores).pvalue


RIGHT = {"10.1": concept_direction, "10.2": class_gradients, "10.3": tcav_score_from, "10.4": two_sided_p,
         "10.5": {"a", "c", "e"}}


@pytest.mark.parametrize("task_id", sorted(RIGHT))
def test_right_answers_pass_with_full_points(task_id):
    result = outcome(task_id, RIGHT[task_id])
    assert result.passed, result.message
    assert result.points == result.max_points == checks.find(task_id).points


def difference_of_means(concept_activations, random_activations):
    rows, labels = flat_rows(concept_activations, random_activations)
    direction = rows[labels == 1].mean(axis=0) - rows[labels == 0].mean(axis=0)
    return direction / np.linalg.norm(direction)


def gradients_with_coursekit(model, layer, images, class_index):
    return concepts.layer_gradients(model, layer, images, class_index).reshape(
        (len(images), *model.get_layer(layer).output.shape[1:]))


def gradients_through_the_probabilities_logit(model, layer, images, class_index):
    """The logit read back from the softmax's input, a layer before it: as good as pre_softmax."""
    inputs = model.inputs[0]
    last = model.layers[-1]
    if isinstance(last, keras.layers.Activation):
        return class_gradients(model, layer, images, class_index,
                               source=lambda m: keras.Model(inputs, m.layers[-2].output))
    return class_gradients(model, layer, images, class_index)


def other_right_answers():
    return [("10.1", difference_of_means), ("10.1", lambda c, r: concept_direction(c, r).tolist()),
            ("10.2", lambda *args: tf.constant(class_gradients(*args))),
            ("10.2", gradients_through_the_probabilities_logit),
            ("10.3", lambda g, v: float(np.sum(g.reshape(len(g), -1) @ v > 0)) / len(g)),
            ("10.4", lambda c, r: stats.ttest_ind(c, r, equal_var=False).pvalue),
            ("10.4", lambda c, r: stats.ttest_ind(c, r, alternative="two-sided").pvalue),
            ("10.5", "a, c, e")]


@pytest.mark.parametrize("task_id, answer", other_right_answers())
def test_other_right_answers_pass(task_id, answer):
    result = outcome(task_id, answer)
    assert result.passed, result.message


def test_coursekit_calls_earn_nothing_where_a_task_asks_for_them_from_scratch():
    result = outcome("10.2", gradients_with_coursekit)
    assert not result.passed and "concepts.layer_gradients" in result.message
    assert not outcome("10.3", lambda g, v: concepts.tcav_score(g.reshape(len(g), -1) @ v)).passed
    assert not outcome("10.4", concepts.p_value).passed


# ----------------------------------------------------------------------------- wrong answers

def mean_of_concept(concept_activations, random_activations):
    mean = concept_activations.reshape(len(concept_activations), -1).mean(axis=0)
    return mean / np.linalg.norm(mean)


def averaged_over_positions(concept_activations, random_activations):
    return concept_direction(concept_activations.mean(axis=(1, 2)), random_activations.mean(axis=(1, 2)))


def raw_coefficients(concept_activations, random_activations):
    rows, labels = flat_rows(concept_activations, random_activations)
    return LogisticRegression().fit(rows, labels).coef_


def across(concept_activations, random_activations):
    """A direction across the right one: the classifier's weights without their part along the
    difference of the means (at least 0.95 in cosine from the planted direction)."""
    weights = concept_direction(concept_activations, random_activations)
    along = difference_of_means(concept_activations, random_activations)
    rest = weights - (weights @ along) * along
    return rest / np.linalg.norm(rest)


WRONG_10_1 = [
    (lambda c, r: -concept_direction(c, r), "points from the concept towards the random"),
    (lambda c, r: concept_direction(r, c), "points from the concept towards the random"),
    (lambda c, r: 3 * concept_direction(c, r), "length 1"),
    (lambda c, r: flat_rows(c, r)[0][:len(c)].mean(0) - flat_rows(c, r)[0][len(c):].mean(0), "length 1"),
    (mean_of_concept, "concept's mean activations"),
    (raw_coefficients, "one row of it"),
    (averaged_over_positions, "average over the positions"),
    (lambda c, r: np.zeros(c[0].size), "all zeros"),
    (across, "does not separate the two sets"),
]


def probability_gradients(model, layer, images, class_index):
    return class_gradients(model, layer, images, class_index, source=lambda m: m)


WRONG_10_2 = [
    (probability_gradients, "*probability*"),
    (lambda m, layer, x, k: class_gradients(m, layer, x, k, score=lambda z, k: tf.nn.log_softmax(z)[:, k]),
     "log-probability"),
    (lambda m, layer, x, k: class_gradients(m, layer, x, k, score=lambda z, k: tf.reduce_max(z, axis=1)), "*top* class"),
    (lambda m, layer, x, k: class_gradients(m, layer, x, k, score=lambda z, k: tf.reduce_sum(z, axis=1)),
     "sum of all classes"),
    (lambda m, layer, x, k: class_gradients(m, layer, x, k) / len(x), "*sum* of the images"),
    (lambda m, layer, x, k: -class_gradients(m, layer, x, k), "wrong sign"),
    (lambda m, layer, x, k: class_gradients(m, layer, x, k).reshape(len(x), -1), "keep the layer's shape"),
    (lambda m, layer, x, k: class_gradients(m, layer, x, k)[:1], "gives gradients of shape"),
]


def input_gradients(model, layer, images, class_index):
    images = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        score = tf.reduce_sum(models.pre_softmax(model)(images)[:, class_index])
    return tape.gradient(score, images).numpy()


WRONG_10_2.append((input_gradients, "not the input"))


def derivatives(gradients, cav):
    return gradients.reshape(len(gradients), -1) @ cav


WRONG_10_3 = [
    (lambda g, v: np.mean(derivatives(g, v) >= 0), "does not count as positive"),
    (lambda g, v: np.mean(derivatives(g, v) < 0), "*falls*"),
    (lambda g, v: np.mean(derivatives(g, v) <= 0), "*falls*"),
    (lambda g, v: derivatives(g, v).mean(), "mean directional derivative"),
    (lambda g, v: np.mean(g.reshape(len(g), -1) * v > 0), "dot product of its flattened"),
    (lambda g, v: np.sum(derivatives(g, v) > 0), "a count"),
    (lambda g, v: derivatives(g, v) > 0, "return one number"),
]


WRONG_10_4 = [
    (lambda c, r: stats.ttest_ind(c, r, alternative="greater").pvalue, "one-sided"),
    (lambda c, r: stats.ttest_ind(c, r, alternative="less").pvalue, "one-sided"),
    (lambda c, r: stats.ttest_ind(c, r).pvalue / 2, "one-sided"),
    (lambda c, r: 1 - stats.ttest_ind(c, r).pvalue, "1 − p"),
    (lambda c, r: stats.ttest_ind(c, r).statistic, "t statistic"),
    (lambda c, r: stats.ttest_ind(c, r), "p-value alone"),
    (lambda c, r: stats.mannwhitneyu(c, r).pvalue, "two-sided t-test"),
]


@pytest.mark.parametrize("task_id, answer, words", [("10.1", *case) for case in WRONG_10_1]
                         + [("10.2", *case) for case in WRONG_10_2] + [("10.3", *case) for case in WRONG_10_3]
                         + [("10.4", *case) for case in WRONG_10_4])
def test_wrong_answers_get_a_specific_hint(task_id, answer, words):
    result = outcome(task_id, answer)
    assert not result.passed and result.points == 0 and not result.check_error, result.message
    assert words in result.message, result.message


def test_a_paired_test_is_named_when_the_lists_have_the_same_length():
    """ttest_rel needs lists of one length; the check draws such lists half of the time. With
    another length the paired test raises, and the answer gets the error's hint."""
    messages = {outcome("10.4", lambda c, r: stats.ttest_rel(c, r).pvalue).message for _ in range(12)}
    assert not any("well done" in message for message in messages)
    assert any("paired test" in message for message in messages), messages


@pytest.mark.parametrize("task_id", ["10.1", "10.3", "10.4"])
def test_an_answer_hard_coded_from_one_check_fails_the_next(task_id):
    memorised = Memorised(RIGHT[task_id])
    assert outcome(task_id, memorised).passed, "while it still calls the reference"
    memorised.recording = False
    assert not outcome(task_id, memorised).passed  # new random cases


def test_gradients_hard_coded_from_one_check_fail_the_next():
    remembered = []

    def memorised(model, layer, images, class_index):
        if not remembered:
            remembered.append(class_gradients(model, layer, images, class_index))
        return remembered[0]

    outcome("10.2", memorised)
    assert not outcome("10.2", memorised).passed  # other networks, layers and images


def test_multiple_choice_hint_is_the_same_whatever_is_wrong():
    right = RIGHT["10.5"]
    wrong = [right - {"a"}, right | {"b"}, set("abcdef"), {"b", "d", "f"}, right ^ {"c", "d"}]
    messages = {outcome("10.5", answer).message for answer in wrong}
    assert len(messages) == 1 and not any(outcome("10.5", answer).passed for answer in wrong)
    assert "not options" in outcome("10.5", {"g"}).message


def test_the_cases_tell_the_mistakes_apart():
    """The drawn cases themselves: zero derivatives exist and change the count, the concept's
    mean alone points away from the planted direction, and the chosen class is not every image's
    top class."""
    from coursekit.checks import lesson10
    rng = np.random.default_rng(0)
    for _ in range(300):
        gradients, cav, share = lesson10._derivative_case(rng)
        d = derivatives(gradients, cav)
        assert np.sum(d == 0) >= 2 and share == np.mean(d > 0) != np.mean(d >= 0)
        assert np.mean(d > 0) != np.mean(d < 0)
        # the share of positive products (no dot product taken) is no other mistake's number
        products = np.mean(gradients.reshape(len(gradients), -1) * cav > 0)
        others = [np.mean(d > 0), np.mean(d >= 0), np.mean(d < 0), np.mean(d <= 0), d.mean()]
        assert min(abs(products - other) for other in others) > 1e-6
        concept, random, u = lesson10._planted_activations(rng)
        mean = concept.reshape(len(concept), -1).mean(axis=0)
        assert mean @ u / np.linalg.norm(mean) < 0.7
    for _ in range(5):
        model, layer, images, class_index = lesson10._random_concept_net(rng, separate_softmax=bool(rng.integers(2)))
        assert not np.all(model(images).numpy().argmax(axis=1) == class_index)
