"""Lesson 07's sanity finding, restated on the smoke profile's model (MobileNetV2, real weights):
Grad-CAM depends on the learned weights. (Lesson 04's "the cat's heat is on the cat" is checked
against the hand-drawn boxes of data/ in test_data_assets.py.)"""
import numpy as np

from coursekit import cam, metrics, sanity

PHOTOS = ("cat", "coffee", "grace_hopper", "astronaut")


def test_grad_cam_of_mobilenet_v2_changes_as_its_layers_are_randomised(mobilenet_v2):
    """Measured (Spearman rank correlation with the trained maps, 4 photos): top layer alone
    randomised 0.63, 0.68, 0.77, -0.54; half of the 105 weighted layers 0.00, 0.44, 0.56, 0.00;
    all of them 0.00, 0.03, -0.09, -0.11. Asserted: mean below 0.9 after the top layer, below 0.2
    after all, and no photo above 0.5 after all."""
    net = mobilenet_v2
    photos = net.preprocess(np.stack([net.load_image(name) for name in PHOTOS]))
    model = net.model
    classes = model.predict(photos, verbose=0).argmax(axis=1)
    trained = cam.grad_cam(model, photos, class_index=classes)
    n = len(sanity.weighted_layers(model))
    correlation = {step: metrics.rank_correlation(trained, cam.grad_cam(working, photos, class_index=classes))
                   for step, working in sanity.cascade(model, [0, 1, n])}
    np.testing.assert_allclose(correlation[0], 1.0, atol=1e-6)
    assert correlation[1].mean() < 0.9, correlation[1]
    assert correlation[n].mean() < 0.2 and correlation[n].max() < 0.5, correlation[n]
