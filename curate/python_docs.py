"""The `python_docs` input, the quickstart corpus: the Python standard library's own documentation, rendered as text.

Every Python install carries it, so the quickstart runs on a fresh offline machine with no input
prepared by hand. One document per module (its docstring and a table of contents), per public class
(pydoc's rendering: docstring, methods, properties) and per public function, in a stable order, with
the top-level package as a topic label.

Modules are imported in a child process: some standard modules act on import (`antigravity` opens a
browser, `this` prints), and the parent must not inherit that, nor the memory of ~300 imports.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
import os
import pkgutil
import pydoc
import re
import shutil
import subprocess
import sys
import warnings

from datatrove.pipeline.readers import JsonlReader
from filelock import FileLock

# Modules that act on import, need a display, or are test suites rather than documentation.
SKIP_MODULES = {
    "antigravity", "this", "__hello__", "__phello__", "idlelib", "turtledemo", "turtle", "tkinter",
    "test", "lib2to3", "pydoc_data", "ensurepip", "__main__", "msilib", "winreg", "winsound", "_winapi",
    "nt", "msvcrt", "xxlimited", "xxsubtype", "_xxsubinterpreters", "_testcapi", "_testinternalcapi",
}
MIN_CHARS = 40
# Reprs of default values carry memory addresses; they would make the corpus differ run to run.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # a member with no docstring renders as a one-line signature: not a document


def _public(name: str) -> bool:
    return not name.startswith("_")


def iter_python_docs():
    """Yield (id, text, metadata) for the standard library, in a deterministic order."""
    warnings.simplefilter("ignore")
    names = sorted(n for n in sys.stdlib_module_names if _public(n) and n not in SKIP_MODULES)
    modules = []
    for name in names:
        try:
            mod = importlib.import_module(name)
        except BaseException:  # noqa: BLE001 - missing optional modules (tkinter, curses, ...) are skipped
            continue
        modules.append((name, mod))
        for sub in sorted(pkgutil.iter_modules(getattr(mod, "__path__", []) or []), key=lambda m: m.name):
            if not _public(sub.name) or sub.name in ("test", "tests", "__main__"):
                continue
            try:
                modules.append((f"{name}.{sub.name}", importlib.import_module(f"{name}.{sub.name}")))
            except BaseException:  # noqa: BLE001
                continue

    for modname, mod in modules:
        package = modname.split(".")[0]
        members = []
        for attr in sorted(dir(mod)):
            if not _public(attr):
                continue
            try:
                obj = getattr(mod, attr)
            except BaseException:  # noqa: BLE001
                continue
            if (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)) and getattr(
                obj, "__module__", None
            ) == modname:
                members.append((attr, obj))
        doc = _ADDRESS.sub("", inspect.getdoc(mod) or "")
        toc = ", ".join(a for a, _ in members)
        text = f"Module {modname}\n\n{doc}".strip()
        if toc:
            text += f"\n\nContents: {toc}."
        if len(text) >= MIN_CHARS:
            yield f"py:{modname}", text, {"module": modname, "kind": "module", "package": package}
        for attr, obj in members:
            try:
                rendered = pydoc.plaintext.document(obj, attr)
            except BaseException:  # noqa: BLE001
                continue
            rendered = _ADDRESS.sub("", pydoc.plain(rendered)).strip()
            if len(rendered) < MIN_CHARS:
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            yield f"py:{modname}.{attr}", rendered, {"module": modname, "kind": kind, "package": package}


def write_python_docs(folder: str, shards: int) -> int:
    """Render the corpus into `folder` as `shards` jsonl.gz files (contiguous runs of modules)."""
    docs = list(iter_python_docs())
    tmp = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    per = -(-len(docs) // shards)
    for s in range(shards):
        path = os.path.join(tmp, f"{s:05d}.jsonl.gz")
        # mtime=0: the same Python gives byte-identical corpus files
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            for doc_id, text, meta in docs[s * per : (s + 1) * per]:
                gz.write((json.dumps({"id": doc_id, "text": text, **meta}, ensure_ascii=False) + "\n").encode())
    with open(os.path.join(tmp, "MANIFEST.json"), "w") as f:
        json.dump({"documents": len(docs), "shards": shards, "python": sys.version.split()[0]}, f)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return len(docs)


def ensure_python_docs(folder: str, shards: int = 8) -> str:
    """Build the corpus in a child process unless a complete one is already cached in `folder`."""
    manifest = os.path.join(folder, "MANIFEST.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            if json.load(f).get("shards") == shards:
                return folder
    os.makedirs(os.path.dirname(os.path.abspath(folder)), exist_ok=True)
    # several tasks may start at once on a cluster
    with FileLock(f"{folder}.lock"):
        if not os.path.exists(manifest):
            proc = subprocess.run(
                [sys.executable, "-c", f"from curate.python_docs import write_python_docs as w; w({folder!r}, {shards})"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            if proc.returncode != 0 or not os.path.exists(manifest):
                raise RuntimeError(f"building the Python docs corpus in {folder} failed:\n{proc.stderr[-2000:]}")
    return folder


class PythonDocsReader(JsonlReader):
    """Reads the Python docs corpus, building it first (once) if it is not cached yet."""

    name = "🐍 Python docs"

    def __init__(self, folder: str, shards: int = 8, limit: int = -1):
        super().__init__(folder, glob_pattern="*.jsonl.gz", limit=limit, add_file_path=False)
        self.folder, self.shards = folder, shards

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        ensure_python_docs(self.folder, self.shards)
        yield from super().run(data, rank, world_size)
