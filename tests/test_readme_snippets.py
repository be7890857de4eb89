"""The README's Python examples, pasted into a script and run as a user would (`python script.py`),
finish; without their `if __name__ == "__main__":` guard they stop at once with one line naming it,
instead of looping (datatrove's worker processes re-import the script)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, read_docs, synthetic_docs, write_jsonl_gz

GUARD = 'if __name__ == "__main__":'


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def without_guard(snippet: str) -> str:
    """The snippet as someone would paste it without the guard: its body moved to module level."""
    head, _, body = snippet.partition(GUARD + "\n")
    assert body, "the snippet has no main guard"
    return head + textwrap.dedent(body)


@pytest.fixture
def workdir(tmp_path) -> Path:
    """What the snippets refer to: `data/` and `my_recipe.yaml`."""
    write_jsonl_gz(tmp_path / "data" / "part0.jsonl.gz", synthetic_docs(60, dup_every=6))
    (tmp_path / "my_recipe.yaml").write_text(yaml.safe_dump({
        "name": "snippet", "input": {"paths": "data"}, "output": "out",
        "executor": {"tasks": 2, "workers": 2}, "stages": ["normalize", "exact_dedup"],
    }))
    return tmp_path


def run_script(folder: Path, code: str, timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    script = folder / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=timeout)
    return res, time.monotonic() - t0


def test_the_readme_has_the_two_examples():
    snippets = python_snippets()
    assert len(snippets) == 2 and all(GUARD in s for s in snippets)


@pytest.mark.parametrize("index", [0, 1])
def test_snippet_runs_as_a_script(workdir, index):
    snippet = python_snippets()[index]
    res, _ = run_script(workdir, snippet, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    if "LocalPipelineExecutor" in snippet:
        docs = read_docs(workdir / "normalized")
        assert len(docs) == 60
    else:
        printed = Path(res.stdout.strip().splitlines()[-1])
        assert printed == workdir / "out" / "final"
        unique = len({d["text"] for d in synthetic_docs(60, dup_every=6)})
        assert unique < 60 and len(read_docs(printed / "documents")) == unique  # exact duplicates gone


@pytest.mark.parametrize("index", [0, 1])
def test_snippet_without_the_guard_stops_at_once_naming_it(workdir, index):
    code = without_guard(python_snippets()[index])
    res, seconds = run_script(workdir, code, timeout=120)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr[-3000:]  # one line, no traceback
    assert "snippet.py:" in lines[0] and GUARD in lines[0]
    assert seconds < 60
    assert not (workdir / "normalized").exists() and not (workdir / "out").exists()  # nothing started


def test_what_counts_as_an_unguarded_start():
    from curate.mainguard import unguarded_starts

    src = textwrap.dedent('''
        from datatrove.executor import LocalPipelineExecutor
        from curate.api import run_recipe
        LocalPipelineExecutor([], tasks=4).run()                 # 4: a pool, unguarded
        LocalPipelineExecutor([], tasks=4, workers=1).run()      # runs in this process
        LocalPipelineExecutor([], tasks=1).run()                 # one task: no pool
        LocalPipelineExecutor([], tasks=4, start_method="fork").run()  # fork does not re-import
        ex = LocalPipelineExecutor([], tasks=8)
        ex.run()                                                 # 9
        def main():
            run_recipe("r.yaml")                                 # inside a function: not at import
        for name in ["a"]:
            run_recipe(name)                                     # 13: a loop at module level
        if __name__ == "__main__":
            run_recipe("r.yaml")
            LocalPipelineExecutor([], tasks=4).run()
        else:
            pass
        def pipeline():
            ex = LocalPipelineExecutor([], tasks=4)
            ex.run()
        def go():
            pipeline()
        go()                                                     # 24: starts through two functions
        main()                                                   # 25: main() outside the guard
    ''')
    assert unguarded_starts(src) == [4, 9, 13, 24, 25]


ONLY_CURATE = '''\
import curate  # curate only: not `stages`, and no curate step in the pipeline
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

LocalPipelineExecutor([JsonlReader("data/"), JsonlWriter("copied/")], tasks=2, workers=2,
                      logging_dir="logs").run()
'''


def test_importing_curate_alone_does_not_import_the_stages():
    code = "import sys, curate; print(sorted(m for m in sys.modules if m.split('.')[0] == 'stages'))"
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


@pytest.mark.parametrize("first_line", ["import curate", "from curate.documents import read_documents",
                                        "import curate.recipe as recipe"])
def test_a_script_importing_only_curate_stops_at_once_without_the_guard(workdir, first_line):
    """A user's own datatrove pipeline with worker processes, in a script that imports only `curate`:
    without the guard it stops at once with one line (it would loop forever otherwise); with the guard
    it runs."""
    code = ONLY_CURATE.replace("import curate  #", f"{first_line}  #", 1)
    res, seconds = run_script(workdir, code, timeout=120)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr[-3000:]
    assert "snippet.py:6" in lines[0] and GUARD in lines[0]
    assert seconds < 60 and not (workdir / "copied").exists()

    head, _, call = code.partition("LocalPipelineExecutor(")
    guarded = head + GUARD + "\n" + textwrap.indent("LocalPipelineExecutor(" + call, "    ")
    res, _ = run_script(workdir, guarded, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(read_docs(workdir / "copied")) == 60
