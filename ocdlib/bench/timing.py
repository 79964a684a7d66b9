"""How the benchmark times things: interleaved rounds, medians with a spread, ratios.

Every variant of a comparison runs once per round, in an order rotated by one
each round, after warm-up calls of each; a slow patch of a shared machine then
falls on all variants alike. A figure is the median over rounds with its
interquartile range and extremes. A ratio is the median over rounds of the
per-round ratio to the baseline (measured in the same round), so that drift
of the machine between rounds cancels.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

# Every random thing a section builds (model weights, input batches, synthetic ground
# truth) is drawn from this seed, so two runs time the same work.
SEED = 0


@dataclass(frozen=True)
class Spread:
    """Median, quartiles and extremes of one figure over rounds."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    rounds: int

    @classmethod
    def of(cls, values) -> Spread:
        v = sorted(float(x) for x in values)
        if not v:
            raise ValueError("no values to summarise")
        if len(v) >= 2:
            q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
        else:
            q1 = q3 = v[0]
        return cls(statistics.median(v), q1, q3, v[0], v[-1], len(v))

    def scaled(self, factor: float) -> Spread:
        """The same figure in other units (e.g. seconds -> milliseconds)."""
        f = factor
        return Spread(
            self.median * f, self.q1 * f, self.q3 * f, self.min * f, self.max * f, self.rounds
        )

    def inverted(self, numerator: float = 1.0) -> Spread:
        """numerator / x of each figure (seconds per item -> items per second)."""
        return Spread(
            numerator / self.median,
            numerator / self.q3,
            numerator / self.q1,
            numerator / self.max,
            numerator / self.min,
            self.rounds,
        )

    def as_dict(self, digits: int = 4) -> dict:
        d = asdict(self)
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in d.items()}

    def text(self, fmt: str = "{:.1f}", unit: str = "") -> str:
        """The median, then the interquartile range in brackets (a table cell)."""
        q = f"{fmt.format(self.q1)}-{fmt.format(self.q3)}"
        return f"{fmt.format(self.median)}{unit} ({q})"


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What makes a timer reading honest on `device`: wait for queued GPU work."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def interleaved(
    variants: Mapping[str, Callable[[], object]],
    rounds: int,
    repeat: int = 1,
    warmup: int = 1,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, one value per round (the mean of `repeat` calls)."""
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = variants[name]
            sync()
            t0 = time.perf_counter()
            for _ in range(repeat):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / repeat)
    return times


def ratio_to(times: Mapping[str, list[float]], name: str, baseline: str) -> Spread:
    """Per-round ratio of `name` to `baseline` over the rounds both ran, summarised."""
    pairs = zip(times[name], times[baseline], strict=False)
    return Spread.of(a / b for a, b in pairs)


def publish(text: str, out: str | None, filename: str) -> None:
    """Print a benchmark's table, and write it to OUT/`filename` where --out is given."""
    print(text)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / filename).write_text(text)
