"""Reading an archive of OpenLineage events as a graph: datasets joined by the
jobs that read and wrote them."""

from __future__ import annotations

from collections import deque


def graph(events: list[dict]) -> dict[tuple, set[tuple]]:
    """dataset -> the datasets a job wrote after reading it (in the same run)."""
    runs: dict[str, dict] = {}
    for e in events:
        run = runs.setdefault(e["run"]["runId"], {"in": set(), "out": set()})
        run["in"] |= {(d["namespace"], d["name"]) for d in e.get("inputs") or []}
        run["out"] |= {(d["namespace"], d["name"]) for d in e.get("outputs") or []}
    edges: dict[tuple, set[tuple]] = {}
    for run in runs.values():
        for i in run["in"]:
            edges.setdefault(i, set()).update(run["out"] - {i})
    return edges


def path(edges: dict, start: tuple, goal: tuple) -> list[tuple] | None:
    """The shortest chain of datasets from start to goal, breadth first."""
    came = {start: None}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        if node == goal:
            out = []
            while node is not None:
                out.append(node)
                node = came[node]
            return out[::-1]
        for nxt in sorted(edges.get(node, ())):
            if nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return None


def stage(p, dataset: tuple) -> str:
    """The pipeline stage a dataset belongs to, by where it lives under the home."""
    namespace, name = dataset
    if namespace == "file" and name.startswith(str(p.drop)):
        return "drop"
    if namespace == "file" and name.startswith(str(p.raw)):
        return "raw"
    if namespace.startswith("duckdb://"):
        table = name.rsplit(".", 1)[-1]
        return {"stg": "staging", "int": "intermediate"}.get(table.split("_")[0], "marts")
    if name == str(p.audit):
        return "audit"
    if name.startswith(str(p.published)):
        return "published"
    return "other"
