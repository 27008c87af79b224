"""Self-checks for classroom exercises: each prints a verdict (and a hint when wrong) and returns a bool."""
from __future__ import annotations

import torch


def _verdict(ok: bool, message: str, hint: str) -> bool:
    print(f"Correct! {message}" if ok else f"Not yet: {hint}")
    return ok


# ----------------------------------------------------------------------------- curvature (notebook 02)
def check_hutchinson_standard_error(answer, matrix: torch.Tensor, num_probes: int, rtol: float = 1e-3) -> bool:
    """Exercise: the standard error of Hutchinson's trace estimate with ``num_probes`` Rademacher probes.

    Expected: sqrt( 2 (||A||_F^2 - sum_i A_ii^2) / m ) (only the off-diagonal entries add variance).
    """
    if answer is None:
        return _verdict(False, "", "replace None by your formula (a number or a 0-d tensor).")
    A = matrix.detach().double()
    expected = float((2 * ((A**2).sum() - (A.diagonal() ** 2).sum()) / num_probes).sqrt())
    value = float(answer)
    ok = abs(value - expected) <= rtol * expected
    hint = ("for one probe, Var[z^T A z] = 2 sum_{i != j} A_ij^2 (z_i^2 = 1 removes the diagonal); "
            f"average over m probes divides the variance by m. Your value {value:.4g} is off by "
            f"a factor {value / expected:.3g}." if expected else "check your formula.")
    return _verdict(ok, f"standard error = {expected:.4g}.", hint)
