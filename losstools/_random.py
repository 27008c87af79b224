"""Random generators for probes and sampled labels: on the parameters' device, from a seed or a given generator."""
from __future__ import annotations

import torch


def generator(seed: int | torch.Generator | None, device: torch.device) -> torch.Generator:
    """A ``torch.Generator`` on ``device``: the given one, or a new one seeded with ``seed`` (None -> 0)."""
    if isinstance(seed, torch.Generator):
        if seed.device.type != torch.device(device).type:
            raise ValueError(f"the generator is on {seed.device} but the parameters are on {device}; "
                             f"pass torch.Generator(device={str(device)!r}) or an int seed")
        return seed
    return torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
