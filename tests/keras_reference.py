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
  ``[1e-7, 1 - 1e-7]``, which gives 7.07 instead of 4375.02 for the
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

# name, loss class name, constructor kwargs, y_true, y_pred, keras value in float64 / float32
CASES = [
    {
        "name": "bce_probs",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]],
        "y_pred": [[0.1, 0.8, 0.3], [0.65, 0.9, 0.2]],
        "float64": 0.24074433232920978,
        "float32": 0.24074435234069824,
    },
    {
        "name": "bce_probs_soft_targets",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.2, 0.7], [0.5, 0.9]],
        "y_pred": [[0.3, 0.6], [0.45, 0.75]],
        "float64": 0.5635788305049753,
        "float32": 0.5635788440704346,
    },
    {
        "name": "bce_probs_exact_0_and_1",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]],
        "y_pred": [[0.0, 1.0, 0.0], [1.0, 0.0, 0.6]],
        "float64": 2.839064463805416,
        "float32": 2.839064598083496,
    },
    {
        "name": "bce_logits",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 1.0], [1.0, 0.0, 0.25]],
        "y_pred": [[-2.0, 0.5, 3.0], [1.2, -0.7, 0.0]],
        "float64": 0.3348680072633759,
        "float32": 0.33486801385879517,
    },
    {
        "name": "bce_logits_pm_1e4",
        "loss": "BinaryCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 1.0, 0.0], [0.3, 0.8, 1.0, 0.0]],
        "y_pred": [[10000.0, -10000.0, 10000.0, -10000.0], [10000.0, -10000.0, 2.0, -3.0]],
        "float64": 4375.021939420327,
        "float32": 4375.02197265625,
    },
    {
        "name": "cce_probs",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        "y_pred": [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]],
        "float64": 0.5249110622493388,
        "float32": 0.5249110460281372,
    },
    {
        "name": "cce_probs_unnormalised_rows",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "y_pred": [[0.4, 1.4, 0.2], [2.0, 1.0, 1.0]],
        "float64": 0.8714846525293114,
        "float32": 0.871484637260437,
    },
    {
        "name": "cce_probs_soft_targets",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]],
        "y_pred": [[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]],
        "float64": 1.1216815111150678,
        "float32": 1.121681571006775,
    },
    {
        "name": "cce_probs_exact_0_and_1",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]],
        "y_pred": [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        "float64": 8.059047875479163,
        "float32": 8.05904769897461,
    },
    {
        "name": "cce_logits",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]],
        "y_pred": [[1.0, 2.0, -1.0], [0.5, -0.3, 0.8]],
        "float64": 0.7341707551647114,
        "float32": 0.73417067527771,
    },
    {
        "name": "cce_logits_pm_1e4",
        "loss": "CategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "y_pred": [[10000.0, -10000.0, 0.0], [-10000.0, 10000.0, 10000.0]],
        "float64": 10000.34657359028,
        "float32": 10000.3466796875,
    },
    {
        "name": "scce_probs",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [1, 0, 2],
        "y_pred": [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.6, 1.2, 0.2]],
        "float64": 1.1174690724975742,
        "float32": 1.117469072341919,
    },
    {
        "name": "scce_probs_exact_0_and_1",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": False},
        "y_true": [0, 1, 2],
        "y_pred": [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.4]],
        "float64": 5.678128827610827,
        "float32": 5.678128719329834,
    },
    {
        "name": "scce_logits",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [2, 0, 1],
        "y_pred": [[1.0, 2.0, -1.0], [0.5, -0.3, 0.8], [3.0, 0.1, 0.2]],
        "float64": 2.462647658283629,
        "float32": 2.4626476764678955,
    },
    {
        "name": "scce_logits_pm_1e4",
        "loss": "SparseCategoricalCrossentropy",
        "kwargs": {"from_logits": True},
        "y_true": [1, 2, 0],
        "y_pred": [
            [10000.0, -10000.0, 0.0],
            [-10000.0, 10000.0, 10000.0],
            [10000.0, 0.0, -10000.0],
        ],
        "float64": 6666.897715726853,
        "float32": 6666.89794921875,
    },
    {
        "name": "mse",
        "loss": "MeanSquaredError",
        "kwargs": {},
        "y_true": [[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]],
        "y_pred": [[0.3, 0.7, 2.5], [-1.4, 0.5, 1.0]],
        "float64": 0.765,
        "float32": 0.7649999856948853,
    },
    {
        "name": "mae",
        "loss": "MeanAbsoluteError",
        "kwargs": {},
        "y_true": [[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]],
        "y_pred": [[0.3, 0.7, 2.5], [-1.4, 0.6, 1.0]],
        "float64": 0.6,
        "float32": 0.6000000238418579,
    },
    {
        "name": "huber_delta_1",
        "loss": "Huber",
        "kwargs": {"delta": 1.0},
        "y_true": [[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]],
        "y_pred": [[0.3, 2.7, 2.5], [-3.4, 0.6, 1.0]],
        "float64": 0.7958333333333332,
        "float32": 0.79583340883255,
    },
    {
        "name": "huber_delta_0_5",
        "loss": "Huber",
        "kwargs": {"delta": 0.5},
        "y_true": [[0.0, 1.0, 2.0], [-1.0, 0.5, 3.0]],
        "y_pred": [[0.3, 2.7, 2.5], [-3.4, 0.6, 1.0]],
        "float64": 0.475,
        "float32": 0.4750000238418579,
    },
]
