"""coursekit: the helper package of the course "What CNNs Learn".

Import it before Keras: it puts an offline Keras cache in place when ``COURSEKIT_OFFLINE_CACHE``
is set. Modules, one idea each:

* ``env`` (profiles, Colab/GPU/offline, seeding), ``models``, ``data``, ``features``, ``plotting``;
* what the lessons compute: ``filters`` (gradient ascent), ``saliency``, ``cam`` (Grad-CAM),
  ``occlusion``, ``shortcuts`` (decoy training and its fixes), ``metrics``, ``sanity``, ``cues``
  (texture or shape: cue-conflict stimuli and the shape bias; ``downloads`` fetches them);
* ``checks``: the exercises' feedback (``check("01.2", answer)``), imported by exercise notebooks.

The tools that build, publish and grade the course live apart, in ``coursekit.tools``
(``course``, ``exercises``, ``gallery``, ``grade``, ``submission``): no lesson imports them.
"""
import os

# TensorFlow's C++ start-up messages (CPU instruction sets, missing CUDA) confuse students more
# than they help; set TF_CPP_MIN_LOG_LEVEL=0 before importing coursekit to see them again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

from . import env  # noqa: E402

# tf-keras-vis calls a model with a list of inputs ([images]); Keras 3 then warns that a
# one-input model got a list, although it computes the same thing. The warning means nothing to
# a student, so it is hidden (only this message).
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match the expected structure",
                        category=UserWarning)

__version__ = "0.1.0"

env.use_offline_cache()


def setup(seed: int = 0, profile_name: str | None = None):
    """Check versions, seed everything, print where the notebook runs; return the profile."""
    return env.setup(seed=seed, profile_name=profile_name)
