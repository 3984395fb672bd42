#!/usr/bin/env python3
"""Fails when the modules of src/ import each other in a cycle, or when a
module imports one from a higher layer.

The layers, top to bottom: main -> server -> app -> routes -> context ->
state -> the leaves (LAYERS below).
A module is a file of src/, except that a folder (src/routes/) is one
module: its files are one concern, and its table names its handlers while
they use its types. An import is any `crate::NAME` path in code (comments
and strings are ignored), `use crate::{a, b::c}` groups included.

Usage: scripts/ci/check-module-graph.py [SRC_DIR]   (default: src)
"""

import pathlib
import re
import sys

# Higher numbers sit higher. A module not named here is a leaf (0): it may
# import other leaves, as long as no cycle forms.
LAYERS = {
    "server": 6,
    "connection": 5,
    "executor": 5,
    "app": 4,
    "alert_log": 4,
    "routes": 3,
    "service": 3,
    # What a handler works with: the request context and the body reader.
    "context": 2,
    "body": 2,
    # The fork's state may use any leaf, and the context hands it out.
    "state": 1,
}
# The binary's own files talk to the library through `pulse::`, never `crate::`.
BINARY_ONLY = {"main", "cli", "healthcheck", "signals"}


def module_of(path: pathlib.Path, src: pathlib.Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return parts[0]


def strip_comments_and_strings(text: str) -> str:
    # Block comments, line comments (doc comments included), then string
    # literals: what they say about `crate::` is not an import.
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def group_names(body: str) -> list[str]:
    """The first path segment of each item of a `{...}` use group."""
    names, depth, current = [], 0, ""
    for char in body:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if char == "," and depth == 0:
            names.append(current)
            current = ""
        elif depth == 0 or char not in "{}":
            current += char if depth == 0 else ""
    names.append(current)
    return [re.split(r"::|\s", name.strip())[0] for name in names if name.strip()]


def imports_of(text: str) -> set[str]:
    code = strip_comments_and_strings(text)
    found = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)\b", code))
    for match in re.finditer(r"\bcrate::\{", code):
        depth, end = 1, match.end()
        while depth and end < len(code):
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            end += 1
        found.update(group_names(code[match.end() : end - 1]))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    files = sorted(path for path in src.rglob("*.rs"))
    if not files:
        print(f"check-module-graph: no .rs files under {src}", file=sys.stderr)
        return 2
    modules = {module_of(path, src) for path in files} - BINARY_ONLY - {"lib"}
    graph: dict[str, set[str]] = {module: set() for module in modules}
    where: dict[tuple[str, str], str] = {}
    for path in files:
        module = module_of(path, src)
        if module not in graph:
            continue
        for target in imports_of(path.read_text()):
            if target in modules and target != module:
                graph[module].add(target)
                where.setdefault((module, target), str(path))
    problems = []
    for component in cycles(graph):
        edges = [
            f"{a} -> {b} ({where[(a, b)]})"
            for a in component
            for b in sorted(graph[a])
            if b in component
        ]
        problems.append("import cycle between " + ", ".join(component) + ":\n    " + "\n    ".join(edges))
    for (module, target), path in sorted(where.items()):
        if LAYERS.get(target, 0) > LAYERS.get(module, 0):
            problems.append(
                f"upward import: {module} (layer {LAYERS.get(module, 0)}) uses {target} "
                f"(layer {LAYERS[target]}) in {path}"
            )
    edge_count = sum(len(targets) for targets in graph.values())
    if problems:
        print("\n".join(f"check-module-graph: {problem}" for problem in problems), file=sys.stderr)
        return 1
    print(f"check-module-graph: {len(graph)} modules, {edge_count} imports, no cycle, none upward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
