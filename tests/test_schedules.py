"""Learning-rate schedules against their formulas (float64 NumPy, written out
here), hand-computed values, optax on JAX, inside ``jax.jit``; config round
trip and validation."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from helpers import assert_close, to_numpy

from tinynet import backends, schedules
from tinynet.schedules import CosineDecay, ExponentialDecay, StepDecay

STEPS = list(range(0, 31))


def step_decay(initial, step_size, gamma):
    return lambda k: initial * gamma ** (k // step_size)


def exponential(initial, decay_steps, rate, staircase=False):
    def f(k):
        p = k / decay_steps
        return initial * rate ** (math.floor(p) if staircase else p)

    return f


def cosine(initial, decay_steps, alpha=0.0, warmup=0):
    def f(k):
        if warmup and k < warmup:
            return initial * k / warmup
        k = min(k - warmup, decay_steps)
        return initial * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * k / decay_steps)) + alpha)

    return f


CASES = {
    "step": (StepDecay(0.1, 4, 0.5), step_decay(0.1, 4, 0.5)),
    "step-gamma-default": (StepDecay(1.0, 7), step_decay(1.0, 7, 0.1)),
    "exponential": (ExponentialDecay(0.1, 5, 0.7), exponential(0.1, 5, 0.7)),
    "exponential-staircase": (
        ExponentialDecay(0.1, 4, 0.5, staircase=True),
        exponential(0.1, 4, 0.5, staircase=True),
    ),
    "cosine": (CosineDecay(0.1, 20), cosine(0.1, 20)),
    "cosine-alpha": (CosineDecay(0.05, 12, alpha=0.2), cosine(0.05, 12, alpha=0.2)),
    "cosine-warmup": (
        CosineDecay(0.1, 15, alpha=0.1, warmup_steps=6),
        cosine(0.1, 15, alpha=0.1, warmup=6),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_formula(backend, dtype, case):
    schedule, formula = CASES[case]
    want_dtype = backend.dtype(dtype)
    for k in STEPS:
        value = schedule(backend.asarray(k, "int32"), want_dtype)
        assert value.shape == () and value.dtype == want_dtype
        assert_close(value, formula(k), dtype, f"{case} at step {k}")


def test_hand_computed_values(backend):
    def at(schedule, k):
        return float(to_numpy(schedule(backend.asarray(k, "int32"))))

    s = StepDecay(1.0, 3, 0.5)
    assert [at(s, k) for k in range(7)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25], rel=1e-14
    )
    e = ExponentialDecay(0.1, 10, 0.5)
    assert at(e, 5) == pytest.approx(0.1 * math.sqrt(0.5), rel=1e-12)
    assert at(ExponentialDecay(0.1, 10, 0.5, staircase=True), 15) == pytest.approx(0.05, rel=1e-12)
    c = CosineDecay(1.0, 10, alpha=0.1)
    assert at(c, 0) == pytest.approx(1.0, rel=1e-12)
    assert at(c, 5) == pytest.approx(0.55, rel=1e-12)
    assert at(c, 10) == pytest.approx(0.1, rel=1e-12)
    assert at(c, 1000) == pytest.approx(0.1, rel=1e-12)
    w = CosineDecay(1.0, 10, warmup_steps=4)
    assert at(w, 0) == 0.0
    assert at(w, 2) == pytest.approx(0.5, rel=1e-12)
    assert at(w, 4) == pytest.approx(1.0, rel=1e-12)
    assert at(w, 9) == pytest.approx(0.5, rel=1e-12)
    assert at(w, 14) == pytest.approx(0.0, abs=1e-12)
    assert at(w, 100) == pytest.approx(0.0, abs=1e-12)


def test_default_dtype_and_int_steps(backend):
    s = ExponentialDecay(0.1, 5, 0.7)
    value = s(backend.asarray(3, "int32"))
    assert value.dtype == backend.dtype("float64")
    assert_close(value, 0.1 * 0.7**0.6, "float64")
    # a Python int goes to the current backend
    value = s(3)
    assert backends.backend_of(value) is backend
    assert_close(value, 0.1 * 0.7**0.6, "float64")


def test_step_decay_boundaries_are_exact_at_large_steps(backend):
    s = StepDecay(1.0, 1000, 0.9999)
    f32 = backend.dtype("float32")
    for k, stages in [(16_777_999, 16_777), (16_778_000, 16_778)]:
        # float32 rounds both steps to 16_778_000; the integer stage count does not
        value = s(backend.asarray(k, "int32"), f32)
        np.testing.assert_allclose(float(to_numpy(value)), 0.9999**stages, rtol=1e-5)


@pytest.fixture
def jax_backend():
    loaded, why = backends.probe("jax")
    if loaded is None:
        pytest.skip(why)
    with backends.use_backend("jax"), loaded.scope():
        yield loaded


@pytest.mark.parametrize("case", sorted(CASES))
def test_inside_jit(jax_backend, dtype, case):
    import jax

    schedule, formula = CASES[case]
    want = jax_backend.dtype(dtype)
    compiled = jax.jit(lambda k: schedule(k, want))
    for k in STEPS:
        value = compiled(jax_backend.asarray(k, "int32"))
        assert value.dtype == want
        assert_close(value, formula(k), dtype, f"jit {case} at step {k}")


def test_matches_optax(jax_backend):
    optax = pytest.importorskip("optax")
    pairs = [
        (ExponentialDecay(0.1, 5, 0.7), optax.exponential_decay(0.1, 5, 0.7)),
        (ExponentialDecay(0.1, 4, 0.5, True), optax.exponential_decay(0.1, 4, 0.5, staircase=True)),
        (CosineDecay(0.1, 20, alpha=0.2), optax.cosine_decay_schedule(0.1, 20, alpha=0.2)),
        (
            CosineDecay(0.1, 15, alpha=0.1, warmup_steps=6),
            optax.warmup_cosine_decay_schedule(0.0, 0.1, 6, 6 + 15, end_value=0.01),
        ),
    ]
    for ours, theirs in pairs:
        for k in STEPS:
            step = jax_backend.asarray(k, "int32")
            # optax evaluates some schedules in float32
            np.testing.assert_allclose(
                float(ours(step)),
                float(theirs(step)),
                rtol=1e-6,
                atol=1e-9,
                err_msg=f"{ours} at {k}",
            )


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip(case):
    schedule, _ = CASES[case]
    config = schedule.get_config()
    assert config["class_name"] == type(schedule).__name__
    restored = schedules.get(json.loads(json.dumps(config)))
    assert type(restored) is type(schedule) and restored.get_config() == config
    assert schedules.get(schedule) is schedule


def test_get_errors():
    with pytest.raises(
        ValueError, match="valid names are: CosineDecay, ExponentialDecay, StepDecay"
    ):
        schedules.get({"class_name": "Linear"})
    with pytest.raises(ValueError, match="unknown config key"):
        schedules.get({"class_name": "StepDecay", "initial": 0.1, "step_size": 2, "gama": 0.5})
    with pytest.raises(TypeError):
        schedules.get("cosine")


INVALID = [
    (lambda: StepDecay(0.0, 2), "StepDecay", "initial", 0.0, "a positive number"),
    (lambda: StepDecay(0.1, 0), "StepDecay", "step_size", 0, "a positive integer"),
    (lambda: StepDecay(0.1, 2.5), "StepDecay", "step_size", 2.5, "a positive integer"),
    (lambda: StepDecay(0.1, 2, -0.5), "StepDecay", "gamma", -0.5, "a positive number"),
    (
        lambda: ExponentialDecay(0.1, -1, 0.5),
        "ExponentialDecay",
        "decay_steps",
        -1,
        "a positive number",
    ),
    (
        lambda: ExponentialDecay(0.1, 10, 0.0),
        "ExponentialDecay",
        "decay_rate",
        0.0,
        "a positive number",
    ),
    (
        lambda: ExponentialDecay(0.1, 10, 0.5, staircase="no"),
        "ExponentialDecay",
        "staircase",
        "no",
        "True or False",
    ),
    (
        lambda: CosineDecay(float("inf"), 10),
        "CosineDecay",
        "initial",
        float("inf"),
        "a positive number",
    ),
    (lambda: CosineDecay(0.1, 0), "CosineDecay", "decay_steps", 0, "a positive integer"),
    (lambda: CosineDecay(0.1, 10, alpha=1.5), "CosineDecay", "alpha", 1.5, "in [0, 1]"),
    (
        lambda: CosineDecay(0.1, 10, warmup_steps=-1),
        "CosineDecay",
        "warmup_steps",
        -1,
        "a non-negative integer",
    ),
]


@pytest.mark.parametrize(
    "make, owner, name, value, requirement",
    INVALID,
    ids=[f"{o}-{n}-{v!r}" for _, o, n, v, _ in INVALID],
)
def test_invalid_arguments(make, owner, name, value, requirement):
    message = f"{owner}: {name} must be {requirement}, received {name}={value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()
