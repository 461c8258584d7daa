"""Process definitions (API processes): the JSON shape users write, validated into a
graph of steps whose types are classes (definitions.steps). The lowest layer of
automation: it imports nothing of the engine, the store or the services
(docs/architecture.md)."""

from automation.definitions.errors import DefinitionErrors
from automation.definitions.graph import Graph, Step, build_graph, forward_edges
from automation.definitions.steps import STEP_TYPES, StepPolicy, StepType, step_type
from automation.definitions.triggers import TRIGGER_TYPES
from automation.definitions.validation import MAX_STEPS, validate_definition

__all__ = ["MAX_STEPS", "STEP_TYPES", "TRIGGER_TYPES", "DefinitionErrors", "Graph", "Step",
           "StepPolicy", "StepType", "build_graph", "forward_edges", "step_type",
           "validate_definition"]
