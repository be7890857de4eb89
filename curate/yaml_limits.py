"""Size limits that a recipe must fit before it is built into Python objects.

A recipe is a small hand-written file, but YAML can describe far more than it spells out: an alias
repeats a whole subtree (a 400-byte file of nested aliases expands to billions of values), an alias
inside its own anchor makes a cycle, and deep nesting overflows every recursive walk after the parser.
`check_yaml_size` reads the parser's event stream (which PyYAML produces without recursion) once,
computing the size the document would have with every alias expanded, and refuses it early, with
the line, when it crosses a limit. `${var}` substitution has its own limit (`MAX_SUBSTITUTED_CHARS`,
applied in `curate/recipe.py`): each variable is expanded once, and an expansion that grows past the
limit stops there.
"""

from __future__ import annotations

import yaml

MAX_RECIPE_BYTES = 4 * 2**20  # a recipe file larger than this is refused unread
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_NODES = 200_000  # values in the document with every alias expanded
MAX_CHARS = 16 * 2**20  # characters of scalars with every alias expanded
MAX_SUBSTITUTED_CHARS = 1 * 2**20  # the text a `${var}` expansion may produce (one value)


class YamlLimitError(ValueError):
    """The recipe crosses a size limit; `line` is where (1-based) when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def check_yaml_size(text: str) -> None:
    """Raise YamlLimitError when `text` nests too deep, has a recursive alias, or expands too far.

    Malformed YAML is left to the loader (its error message names the problem): this stops quietly.
    """
    stack: list[list] = []  # open collections: [anchor, nodes, chars]
    anchors: dict[str, tuple[int, int]] = {}
    total_nodes = total_chars = 0

    def add(nodes: int, chars: int, line: int) -> None:
        nonlocal total_nodes, total_chars
        if stack:
            stack[-1][1] += nodes
            stack[-1][2] += chars
        else:
            total_nodes += nodes
            total_chars += chars
        # what is open counts too: a bomb is caught while it is being built, not after
        nodes_now = total_nodes + sum(s[1] for s in stack)
        chars_now = total_chars + sum(s[2] for s in stack)
        if nodes_now > MAX_NODES:
            raise YamlLimitError(f"the recipe expands to more than {MAX_NODES:,} values (YAML aliases repeat "
                                 "whole subtrees); a recipe this large is refused", line)
        if chars_now > MAX_CHARS:
            raise YamlLimitError(f"the recipe expands to more than {MAX_CHARS:,} characters of text (YAML "
                                 "aliases repeat whole subtrees); a recipe this large is refused", line)

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep; a recipe is a few levels "
                                         "of mappings and lists", line)
                stack.append([event.anchor, 1, 0])
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, nodes, chars = stack.pop()
                if anchor is not None:
                    anchors[anchor] = (nodes, chars)
                add(nodes, chars, line)
            elif isinstance(event, yaml.ScalarEvent):
                size = (1, len(event.value))
                if event.anchor is not None:
                    anchors[event.anchor] = size
                add(*size, line)
            elif isinstance(event, yaml.AliasEvent):
                if any(s[0] == event.anchor for s in stack):
                    raise YamlLimitError(f"alias *{event.anchor} refers to its own anchor &{event.anchor} "
                                         "(a recursive structure); a recipe must be a tree", line)
                if event.anchor in anchors:
                    add(*anchors[event.anchor], line)
    except yaml.YAMLError:
        return
