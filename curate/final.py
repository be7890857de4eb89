"""`OUT/final`: one stable place for what a run produced, whatever its last stage was.

When a run ends, `OUT/final/` gets
- `documents` -> the final document set (`*.jsonl.gz`, the cleaned and deduplicated documents),
- one entry per output a stage published as final (`GlobalPlan.outputs`): `windows` (packed
  context windows: parquet/jsonl and datatrove's `tokenized/`), `order.parquet`, `pack.json`, ...,
  each a relative symbolic link into the phase folder that wrote it (nothing is copied, and the
  links stay valid when OUT is moved or copied with its links),
- `manifest.json`: the same, with every file and its size, for tools (and filesystems without links).
A later stage's output of the same name replaces an earlier one's (two `pack` stages: the last wins).
"""

from __future__ import annotations

import os

from curate.atomic import write_json_atomic

FINAL_DIR = "final"
MANIFEST = "manifest.json"


def _files(path: str, root: str) -> list[dict]:
    if os.path.isfile(path):
        return [{"path": os.path.relpath(path, root), "bytes": os.path.getsize(path)}]
    out = []
    for folder, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".partial") or ".tmp" in name:
                continue
            full = os.path.join(folder, name)
            out.append({"path": os.path.relpath(full, root), "bytes": os.path.getsize(full)})
    return out


def publish_final(output_dir: str, documents: str | None, outputs: dict[str, str]) -> str:
    """Write `OUT/final/` (links and manifest) for a finished run; returns its path."""
    final = os.path.join(output_dir, FINAL_DIR)
    os.makedirs(final, exist_ok=True)
    entries = dict(outputs)
    if documents:
        entries = {"documents": documents, **entries}
    manifest = {}
    for name, target in entries.items():
        if not os.path.exists(target):
            continue
        link = os.path.join(final, name)
        relative = os.path.relpath(target, final)
        manifest[name] = {"path": os.path.relpath(target, output_dir), "link": os.path.relpath(link, output_dir),
                          "files": _files(target, output_dir)}
        if os.path.islink(link) and os.readlink(link) == relative:
            continue
        try:
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(relative, link)
        except OSError:  # a filesystem without symbolic links: the manifest alone says where things are
            manifest[name]["link"] = None
    write_json_atomic(manifest, os.path.join(final, MANIFEST))
    return final
