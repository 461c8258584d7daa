"""Graphs of process versions. Versions never change, so each is built once per process."""

from functools import lru_cache

from automation.definition import Graph, build_graph


@lru_cache(maxsize=1024)
def _graph(version_id: int) -> Graph:
    from automation.models import ProcessVersion

    return build_graph(ProcessVersion.objects.only("definition").get(pk=version_id).definition)


def graph_for(version_id: int) -> Graph:
    return _graph(version_id)
