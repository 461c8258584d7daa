"""Named functions that function steps call: built-in actions, Python functions
registered in code with `@function(...)`, and Function rows configured in the admin."""

from automation.functions.registry import (
    FunctionSpec,
    StepContext,
    function,
    function_exists,
    function_params_check,
    get_action,
    resolve_function,
)

__all__ = ["FunctionSpec", "StepContext", "function", "function_exists",
           "function_params_check", "get_action", "resolve_function"]
