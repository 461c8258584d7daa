"""Graphs of process versions. Versions never change, so each is built once per process."""

from functools import lru_cache

from automation.definitions import Graph, build_graph
from automation.definitions.flow import Concurrency, concurrency_of
from automation.models import ProcessVersion


@lru_cache(maxsize=1024)
def _graph(version_id: int) -> Graph:
    return build_graph(ProcessVersion.objects.only("definition").get(pk=version_id).definition)


def graph_for(version_id: int) -> Graph:
    return _graph(version_id)


@lru_cache(maxsize=1024)
def _plain(version_id: int) -> bool:
    graph = _graph(version_id)
    return not any(graph.is_join(sid) or sid in graph.loop_bodies for sid in graph.steps)


def is_plain(version_id: int) -> bool:
    """No joins and no loops: nothing in the run is ever waiting on other step runs, so
    after a step that scheduled a successor there is nothing to re-derive."""
    return _plain(version_id)


@lru_cache(maxsize=1024)
def _sequential(version_id: int) -> bool:
    graph = _graph(version_id)
    return _plain(version_id) and all(len(step.next) <= 1 for step in graph.steps.values())


def is_sequential(version_id: int) -> bool:
    """Plain, and no step fans out: a run has at most one active step at any time, so
    the outputs a step can see are exactly those of the steps before it, and the step
    that ends the only branch ends the run."""
    return _sequential(version_id)


@lru_cache(maxsize=1024)
def concurrency_for(version_id: int) -> Concurrency | None:
    """The version's concurrency rule (docs/user-guide/concurrency.md), None without one."""
    return concurrency_of(ProcessVersion.objects.only("definition").get(pk=version_id).definition)


@lru_cache(maxsize=1024)
def version_number(version_id: int) -> int:
    """The number people know a version by (a trace's attribute); versions never change."""
    return ProcessVersion.objects.values_list("number", flat=True).get(pk=version_id)
