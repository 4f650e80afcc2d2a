"""Loss values computed by real Keras, stored as literal numbers.

Generated once with keras 3.15.1 (KERAS_BACKEND=jax, jax 0.10.2 with x64
enabled) by calling ``keras.losses.<Class>(**kwargs)(y_true, y_pred)`` on these
inputs, once with ``keras.config.set_floatx("float64")`` (float64 inputs) and
once with ``"float32"`` (float32 inputs).  Keras is not needed at test time.

Two notes on the generation:

* keras 3.15's type promotion maps 64-bit dtypes to 32-bit
  (``keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE``), so e.g.
  ``ops.mean`` of a float64 tensor silently returns float32.  The generator
  emptied that dict, so the float64 numbers really are float64 all the way.
* The JAX backend was used because its ``binary_crossentropy(from_logits=True)``
  is the stable log-sigmoid form (as on the TensorFlow and torch backends).
  Keras's NumPy backend instead takes ``sigmoid`` and clips it to
  ``[1e-7, 1 - 1e-7]``, which gives 6.12 instead of 3750.07 for the
  ``bce_logits_pm_1e4`` case; every other case agreed between the NumPy and
  JAX backends to 3e-16 (float64) / 1e-7 (float32).

The generator (its ``CASES`` held this file's cases as
(name, loss, kwargs, y_true, y_pred) tuples)::

    import os, sys, json
    BK = sys.argv[1]
    os.environ["KERAS_BACKEND"] = BK
    if BK == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    import numpy as np
    import keras
    from keras.src.backend.common import dtypes as kdtypes
    kdtypes.BIT64_TO_BIT32_DTYPE.clear()
    out = {"keras": keras.__version__, "backend": BK, "values": {}}
    for floatx in ("float64", "float32"):
        keras.config.set_floatx(floatx)
        for name, cls, kw, yt, yp in CASES:
            yt_a = np.asarray(yt, dtype="int32" if cls.startswith("Sparse") else floatx)
            yp_a = np.asarray(yp, dtype=floatx)
            v = getattr(keras.losses, cls)(**kw)(yt_a, yp_a)
            assert str(v.dtype) == floatx, (name, v.dtype)
            out["values"].setdefault(name, {})[floatx] = float(np.asarray(v))
"""

KERAS_VERSION = "3.15.1"

# name, loss class name, constructor kwargs, y_true, y_pred (all 3 x 4; sparse: 3 labels),
# and the value Keras computed in float64 and in float32
CASES = [
    {
        "name": "bce_probs",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]],
        "y_pred": [[0.1, 0.8, 0.3, 0.55], [0.65, 0.9, 0.2, 0.45], [0.05, 0.35, 0.7, 0.95]],
        "float64": 0.29418203702439893,
        "float32": 0.29418203234672546,
    },
    {
        "name": "bce_probs_soft_targets",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.2, 0.7, 0.5, 0.0], [0.5, 0.9, 1.0, 0.1], [0.33, 0.66, 0.25, 0.75]],
        "y_pred": [[0.3, 0.6, 0.5, 0.2], [0.45, 0.75, 0.85, 0.15], [0.4, 0.5, 0.1, 0.9]],
        "float64": 0.5263511357011508,
        "float32": 0.5263511538505554,
    },
    {
        "name": "bce_probs_exact_0_and_1",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 1.0, 0.0]],
        "y_pred": [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.6, 0.3], [0.0, 1.0, 0.8, 0.2]],
        "float64": 4.243403174374419,
        "float32": 4.221438884735107,
    },
    {
        "name": "bce_logits",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.25, 1.0], [0.5, 0.0, 1.0, 0.75]],
        "y_pred": [[-2.0, 0.5, 3.0, -0.3], [1.2, -0.7, 0.0, 4.5], [0.8, -5.0, -1.5, 2.2]],
        "float64": 0.4757436370904767,
        "float32": 0.4757436215877533,
    },
    {
        "name": "bce_logits_pm_1e4",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 1.0, 0.0], [0.3, 0.8, 1.0, 0.0], [0.5, 0.5, 1.0, 1.0]],
        "y_pred": [
            [10000.0, -10000.0, 10000.0, -10000.0],
            [10000.0, -10000.0, 2.0, -3.0],
            [-10000.0, 10000.0, 0.0, 5.0],
        ],
        "float64": 3750.0729481576386,
        "float32": 3750.072998046875,
    },
    {
        "name": "cce_probs",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
        "y_pred": [[0.2, 0.6, 0.1, 0.1], [0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]],
        "float64": 0.8634223884819422,
        "float32": 0.8634223937988281,
    },
    {
        "name": "cce_probs_unnormalised_rows",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
        "y_pred": [[0.4, 1.4, 0.2, 0.6], [2.0, 1.0, 1.0, 0.5], [0.01, 0.02, 0.03, 0.04]],
        "float64": 1.4752338993921807,
        "float32": 1.4752339124679565,
    },
    {
        "name": "cce_probs_soft_targets",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.1, 0.6, 0.3, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.5, 0.0, 0.5]],
        "y_pred": [[0.2, 0.5, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1]],
        "float64": 1.4981002841722144,
        "float32": 1.4981002807617188,
    },
    {
        "name": "cce_probs_exact_0_and_1",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
        "y_pred": [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]],
        "float64": 5.603747643839423,
        "float32": 5.603747844696045,
    },
    {
        "name": "cce_logits",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 0.0, 0.0], [0.2, 0.3, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]],
        "y_pred": [[1.0, 2.0, -1.0, 0.5], [0.5, -0.3, 0.8, 1.1], [-2.0, 0.0, 3.0, 1.5]],
        "float64": 1.2874833395056815,
        "float32": 1.2874833345413208,
    },
    {
        "name": "cce_logits_pm_1e4",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.0, 0.5]],
        "y_pred": [
            [10000.0, -10000.0, 0.0, 1.0],
            [-10000.0, 10000.0, 10000.0, -10000.0],
            [10000.0, 10000.0, -10000.0, -10000.0],
        ],
        "float64": 10000.462098120372,
        "float32": 10000.4619140625,
    },
    {
        "name": "scce_probs",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [1, 0, 3],
        "y_pred": [[0.2, 0.6, 0.1, 0.1], [0.5, 0.3, 0.15, 0.05], [0.6, 1.2, 0.2, 2.0]],
        "float64": 0.6323733282952938,
        "float32": 0.6323733329772949,
    },
    {
        "name": "scce_probs_exact_0_and_1",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [0, 1, 2],
        "y_pred": [[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.3, 0.3, 0.4, 0.0]],
        "float64": 5.678128827610827,
        "float32": 5.678128719329834,
    },
    {
        "name": "scce_logits",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [2, 0, 1],
        "y_pred": [[1.0, 2.0, -1.0, 0.5], [0.5, -0.3, 0.8, 1.1], [3.0, 0.1, 0.2, -4.0]],
        "float64": 2.67875924080146,
        "float32": 2.6787593364715576,
    },
    {
        "name": "scce_logits_pm_1e4",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [1, 2, 0],
        "y_pred": [
            [10000.0, -10000.0, 0.0, 1.0],
            [-10000.0, 10000.0, 10000.0, -10000.0],
            [10000.0, 0.0, -10000.0, 10000.0],
        ],
        "float64": 6667.128764787039,
        "float32": 6667.12890625,
    },
    {
        "name": "mse",
        "loss": "MeanSquaredError",
        "kwargs": {},
        "y_true": [[0.0, 1.0, 2.0, -0.5], [-1.0, 0.5, 3.0, 0.25], [4.0, -2.0, 0.0, 1.5]],
        "y_pred": [[0.3, 0.7, 2.5, -0.5], [-1.4, 0.6, 1.0, 0.2], [3.1, -2.2, 0.05, 1.9]],
        "float64": 0.4679166666666667,
        "float32": 0.46791669726371765,
    },
    {
        "name": "mae",
        "loss": "MeanAbsoluteError",
        "kwargs": {},
        "y_true": [[0.0, 1.0, 2.0, -0.5], [-1.0, 0.5, 3.0, 0.25], [4.0, -2.0, 0.0, 1.5]],
        "y_pred": [[0.3, 0.7, 2.5, -0.6], [-1.4, 0.6, 1.0, 0.2], [3.1, -2.2, 0.05, 1.9]],
        "float64": 0.44166666666666665,
        "float32": 0.44166669249534607,
    },
    {
        "name": "huber_default_delta",
        "loss": "Huber",
        "kwargs": {},
        "y_true": [[0.0, 1.0, 2.0, -0.5], [-1.0, 0.5, 3.0, 0.25], [4.0, -2.0, 0.0, 1.5]],
        "y_pred": [[0.3, 2.7, 2.5, -0.6], [-3.4, 0.6, 1.0, 0.2], [3.1, -2.2, 0.05, 1.9]],
        "float64": 0.440625,
        "float32": 0.44062498211860657,
    },
    {
        "name": "huber_delta_0_5",
        "loss": "Huber",
        "kwargs": {"delta": 0.5},
        "y_true": [[0.0, 1.0, 2.0, -0.5], [-1.0, 0.5, 3.0, 0.25], [4.0, -2.0, 0.0, 1.5]],
        "y_pred": [[0.3, 2.7, 2.5, -0.6], [-3.4, 0.6, 1.0, 0.2], [3.1, -2.2, 0.05, 1.9]],
        "float64": 0.2735416666666667,
        "float32": 0.273541659116745,
    },
    {
        "name": "huber_delta_2_5",
        "loss": "Huber",
        "kwargs": {"delta": 2.5},
        "y_true": [[0.0, 1.0, 2.0, -0.5], [-1.0, 0.5, 3.0, 0.25], [4.0, -2.0, 0.0, 1.5]],
        "y_pred": [[0.3, 2.7, 2.5, -0.6], [-3.4, 0.6, 6.0, 0.2], [3.1, -2.2, 0.05, 1.9]],
        "float64": 0.7822916666666666,
        "float32": 0.7822917103767395,
    },
]
