"""Training a model to be right for the right reasons (Ross, Hughes and Doshi-Velez 2017).

When we know where a shortcut lives (the decoy patch of :func:`coursekit.data.decoy_mnist`), we
can forbid the model from using it: add to the loss the squared input gradients of the summed
log-probabilities inside a mask of forbidden pixels,

    loss = cross-entropy + penalty * mean over images of  sum over pixels of (mask * d(sum_k log p_k)/dx)^2

so that small changes to the masked pixels cannot change any prediction. The input gradients are
those of the model's input as given (0-255 pixels for the course's digit models), which sets the
scale of ``penalty``.

``models.pre_softmax(model)`` gives the classifier's logits with *shared* weights, so that
training through it trains the classifier.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from . import _inputs
from .models import pre_softmax

DEFAULT_PENALTY = 300.0  # for digits in 0-255; larger values destabilise repairing a trained model


def _log_probability_sum(logits_model: keras.Model, images, training: bool):
    logits = logits_model(images, training=training)
    return logits, tf.reduce_sum(tf.nn.log_softmax(logits, axis=-1))


def right_reasons_gradients(model: keras.Model, images) -> np.ndarray:
    """Input gradients of the summed log-probabilities, ``d(sum_k log p_k)/dx``: what the penalty sees.

    ``images``: the model's input batch ``(N, H, W, C)`` (or one image, or digits without their
    channel axis: :func:`coursekit._inputs.image_batch`). Returns ``(N, H, W, C)`` float32.
    Ross et al. use them as the model's explanation: large values mark the pixels whose change
    would move the predictions most.
    """
    logits_model = pre_softmax(model)
    batch = tf.convert_to_tensor(_inputs.image_batch(model, images))
    with tf.GradientTape() as tape:
        tape.watch(batch)
        _, total = _log_probability_sum(logits_model, batch, training=False)
    return tape.gradient(total, batch).numpy()


def right_reasons_loss(logits_model: keras.Model, images, labels, masks, penalty: float = DEFAULT_PENALTY,
                       training: bool = False):
    """The two terms of the loss for one batch: ``(cross_entropy, weighted_penalty, logits)``.

    ``logits_model`` outputs logits; ``images`` its input batch, ``labels`` ``(N,)`` ints, ``masks``
    1 on forbidden pixels (the images' shape, or without their channel axis). Both terms are
    means over the batch, as tensors, so that a ``GradientTape`` around this call can train on them.
    """
    images = tf.cast(images, tf.float32)
    masks = tf.reshape(tf.cast(masks, tf.float32), tf.shape(images))
    with tf.GradientTape() as input_tape:
        input_tape.watch(images)
        logits, log_probability_sum = _log_probability_sum(logits_model, images, training=training)
    input_gradients = input_tape.gradient(log_probability_sum, images)
    batch = tf.cast(tf.shape(images)[0], tf.float32)
    weighted_penalty = penalty * tf.reduce_sum(tf.square(masks * input_gradients)) / batch
    cross_entropy = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    return cross_entropy, weighted_penalty, logits


class RightForTheRightReasons(keras.Model):
    """Wraps a classifier; training penalises its input gradients inside given masks.

    Train with ``fit(x=(images, masks), y=labels)``: ``masks`` is 1 (or True) on forbidden
    pixels, with the images' shape or without their channel axis. The classifier ends in a
    softmax (its logits are used) or outputs logits itself. Prediction calls the classifier.
    Logged: ``loss`` (total), ``penalty`` (the gradient term, already weighted) and ``accuracy``.
    """

    def __init__(self, classifier: keras.Model, penalty: float = DEFAULT_PENALTY, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.logits_model = pre_softmax(classifier)  # shares the classifier's weights
        self.penalty = float(penalty)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.penalty_tracker = keras.metrics.Mean(name="penalty")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, inputs, training=False):
        images = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
        return self.classifier(images, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.penalty_tracker, self.accuracy_tracker]

    def train_step(self, data):
        (images, masks), labels = data
        with tf.GradientTape() as weight_tape:
            cross_entropy, penalty, logits = right_reasons_loss(self.logits_model, images, labels, masks,
                                                                self.penalty, training=True)
            loss = cross_entropy + penalty
        weights = self.classifier.trainable_variables
        self.optimizer.apply(weight_tape.gradient(loss, weights), weights)
        self.loss_tracker.update_state(loss)
        self.penalty_tracker.update_state(penalty)
        self.accuracy_tracker.update_state(labels, logits)
        return {metric.name: metric.result() for metric in self.metrics}


def train_right_reasons(model: keras.Model, images, labels, masks, *, epochs: int,
                        penalty: float = DEFAULT_PENALTY, batch_size: int = 64,
                        learning_rate: float = 1e-3, verbose: int = 0) -> keras.callbacks.History:
    """Train ``model`` in place with the right-for-the-right-reasons loss; returns the History.

    ``images``: ``(N, H, W)`` digits or the model's input batch; ``labels``: ``(N,)`` ints;
    ``masks``: boolean ``(N, H, W)``, True on the pixels the model must not rely on (e.g. the
    ``masks`` of :func:`coursekit.data.decoy_mnist`). ``penalty`` weighs the gradient term.
    """
    batch = _inputs.image_batch(model, images)
    masks = np.asarray(masks)
    labels = np.asarray(labels)
    if masks.shape != batch.shape[:3] and masks.shape != batch.shape:
        raise ValueError(f"masks must be (N, H, W) = {batch.shape[:3]}, one per image; got {masks.shape}.")
    if labels.shape != (len(batch),):
        raise ValueError(f"Got {len(batch)} images but labels of shape {labels.shape}: one label per image.")
    if masks.shape != batch.shape:
        masks = masks.reshape(*masks.shape, *([1] * (batch.ndim - masks.ndim)))
        masks = np.broadcast_to(masks, batch.shape)
    trainer = RightForTheRightReasons(model, penalty=penalty)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return trainer.fit((batch, masks.astype("float32")), labels, epochs=epochs, batch_size=batch_size,
                       verbose=verbose)
