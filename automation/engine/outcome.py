"""Kept while the engine's modules move: `Outcome` now lives with the step types that
produce it (automation.definitions.steps.outcome)."""

from automation.definitions.steps.outcome import Outcome

__all__ = ["Outcome"]
