"""The shared argument checks: the value back in canonical type, or one clear standard error."""
import math

import numpy as np
import pytest

from losstools import _validate as v


def test_choice():
    assert v.choice("sgd", ("adam", "sgd"), "optimizer") == "sgd"
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs'; choose one of 'adam', 'sgd'"):
        v.choice("lbfgs", ("adam", "sgd"), "optimizer")
    with pytest.raises(ValueError, match="unknown scope"):
        v.choice(["global"], ("global",), "scope")  # unhashable: still the standard error


@pytest.mark.parametrize("value", [0.0, 0.5, np.float32(0.98847)])
def test_fraction_accepts(value):
    assert v.fraction(value, "sparsity") == pytest.approx(float(value)) and isinstance(v.fraction(value, "s"), float)


@pytest.mark.parametrize("value, error, message", [
    (1.0, ValueError, r"sparsity must be a fraction in \[0, 1\), got 1"), (-0.1, ValueError, "fraction"),
    (math.nan, ValueError, "finite"), ("0.5", TypeError, "real number"), (True, TypeError, "real number"),
])
def test_fraction_refuses(value, error, message):
    with pytest.raises(error, match=message):
        v.fraction(value, "sparsity")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        v.fraction(0.0, "p", closed_low=False)


def test_positive_int():
    assert (v.positive_int(3, "steps") == 3 and v.positive_int(3.0, "steps") == 3
            and v.positive_int(np.int64(2), "s") == 2)
    assert v.positive_int(0, "epochs", minimum=0) == 0
    for bad, error in [(0, ValueError), (2.5, ValueError), (math.inf, ValueError), (True, TypeError), ("3", TypeError)]:
        with pytest.raises(error, match="steps must be an integer >= 1"):
            v.positive_int(bad, "steps")
    assert v.int_list((1, 14, 140), "steps") == [1, 14, 140] and v.int_list(5, "seeds") == [5]
    with pytest.raises(ValueError, match="at least one"):
        v.int_list([], "seeds")


def test_finite():
    assert v.finite(1e-3, "lr", low=0.0, low_inclusive=False) == 1e-3
    with pytest.raises(ValueError, match="lr must be > 0"):
        v.finite(0.0, "lr", low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match=r"reg must be >= 0, got -1"):
        v.finite(-1, "reg", low=0.0)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="reg must be a finite number"):
            v.finite(bad, "reg")
