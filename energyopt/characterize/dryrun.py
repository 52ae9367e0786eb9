"""A dry run of the harness: the whole measurement loop without torch, a GPU or waiting.

``characterize --dry-run`` (and a dry-run campaign) swaps the LLM runner and the energy meters for
these: a runner whose runs take simulated time on a virtual clock (a function of the LLM's
parameters, the token counts and the batch size; nothing is computed), and a meter that draws a
constant power on that clock. Idle windows and time budgets run on the same clock, so a dry run
of a full design takes milliseconds. Every row it writes says so: ``energy_source`` and
``decode_loop`` are ``dry_run``, ``gpu_name`` is ``dry run``; they are for testing a set-up (a
campaign, a cluster's resources, resume), never for fitting.
"""

from __future__ import annotations

from .catalog import ArchSpec
from .meters import EstimateMeter

__all__ = ["DRY_RUN", "DryClock", "DryRunner", "DryMeter", "DRY_BUSY_POWER_W", "DRY_IDLE_POWER_W"]

#: the value of ``energy_source`` and ``decode_loop`` on a dry run's rows
DRY_RUN = "dry_run"
DRY_BUSY_POWER_W = 300.0
DRY_IDLE_POWER_W = 100.0


class DryClock:
    """A virtual clock [s]: the dry runner advances it, ``sleep`` advances it, nothing waits."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class DryMeter(EstimateMeter):
    """A constant busy power on the virtual clock, labelled ``dry_run``."""

    source = DRY_RUN


class DryRunner:
    """Runs of a catalog LLM that take simulated time: a prefill of ``batch × input`` tokens and
    ``output`` decode steps whose cost grows with the LLM's parameters and, slowly, the batch."""

    decode_loop = DRY_RUN

    def __init__(self, spec: ArchSpec, clock: DryClock, decode_attention: str = "grouped"):
        self.spec = spec
        self.clock = clock
        self.decode_attention = decode_attention
        self.context_tokens = spec.context_tokens
        self.versions = {"torch_version": "", "transformers_version": ""}
        self.fallback_reason = ""
        self.runs: list[tuple[int, int, int]] = []

    def runtime_s(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> float:
        """Simulated runtime [s] of one run."""
        p = self.spec.params_b
        return 0.005 + p * (2e-6 * input_tokens * batch_size + 2e-3 * output_tokens * (1 + batch_size / 64))

    def prepare(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
        pass

    def run(self, input_tokens: int, output_tokens: int, batch_size: int = 1) -> None:
        self.runs.append((input_tokens, output_tokens, batch_size))
        self.clock.t += self.runtime_s(input_tokens, output_tokens, batch_size)
