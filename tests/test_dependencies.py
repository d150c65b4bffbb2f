"""Dependencies where they belong: what `pip install .` brings, and what each part of hpo imports.

The project's own dependencies (pyproject.toml's ``dependencies``) are what the
controller and the agent import. The fake RunPod API's server libraries are
the ``fake`` extra, scikit-learn (the example objectives' data) the
``examples`` extra, RunPod's SDK (which hpo never imports, and which asks for
FastAPI and so Starlette and uvicorn) the ``sdk`` extra; ``dev`` takes them all.

The tests walk the dependency graph the way pip would: requirements from
pyproject.toml, then each distribution's own (``importlib.metadata.requires``,
markers evaluated for this interpreter), at the versions requirements/dev.lock
pins, which must be the installed ones (`pip install -c requirements/dev.lock
-e '.[dev]'`). Imports are checked in fresh interpreters, with the
distributions a set leaves out made unimportable (``sys.modules[name] = None``,
as if they were not installed), so an import that would fail without them
fails here too.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
PROJECT = "runpod-hpo"
DEV_LOCK = REPO / "requirements" / "dev.lock"
AGENT_IN = REPO / "docker" / "agent.in"

# Never brought by `pip install .`: the fake's server libraries, FastAPI (the SDK's), the examples' scikit-learn.
NOT_IN_BASE = ("starlette", "uvicorn", "graphql-core", "jsonschema", "referencing", "scikit-learn", "fastapi",
               "fastapi-cli", "runpod")
# Top-level modules of those, which `import hpo.cli` must not load.
SERVER_AND_EXAMPLE_MODULES = ("starlette", "uvicorn", "graphql", "jsonschema", "referencing", "sklearn", "fastapi",
                              "runpod")


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


UNSAFE_HEADER = "# The following packages are considered to be unsafe in a requirements file:"


@cache
def _locked() -> dict[str, str | None]:
    """requirements/dev.lock's pins, by normalised name; None for the ones pip-tools leaves unpinned
    (its "unsafe" packages, listed as comments at the end: setuptools, and this project)."""
    pins: dict[str, str | None] = {}
    unsafe = False
    for line in DEV_LOCK.read_text().splitlines():
        if line == UNSAFE_HEADER:
            unsafe = True
        elif unsafe and line.startswith("# "):
            pins[_name(line[2:].strip())] = None
        elif line and not line[0].isspace() and not line.startswith("#"):
            req = Requirement(line)
            [spec] = list(req.specifier)
            pins[_name(req.name)] = spec.version
    return pins


def _installed_version(name: str) -> str:
    """The installed version of ``name``, checked against the lock: the metadata read is the locked release's."""
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed: install the locked environment, "
                    "pip install -c requirements/dev.lock -e '.[dev]'")
    assert _name(name) in _locked(), f"{name} is not in requirements/dev.lock (run requirements/update-locks.sh)"
    locked = _locked()[_name(name)]
    assert locked is None or version.split("+")[0] == locked, (
        f"{name} {version} is installed, the lock pins {locked}: pip install -c requirements/dev.lock -e '.[dev]'"
    )
    return version


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    # This interpreter's environment (the lock's: Python 3.11 on Linux), with each extra asked for.
    return any(req.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def closure(requirements: Iterable[str], *, project_extras: Iterable[str] = ()) -> set[str]:
    """Every distribution ``requirements`` bring, transitively (normalised names, the project excluded).

    This project's own requirements come from pyproject.toml (its dependencies, and ``project_extras``' and
    those of any extra that names this project, ``runpod-hpo[fake,...]``); everything else's from the
    installed distribution's metadata, at the locked version.
    """
    project = _pyproject()
    todo: list[tuple[Requirement, frozenset[str]]] = [(Requirement(r), frozenset()) for r in requirements]
    todo += [(Requirement(f"{PROJECT}[{extra}]"), frozenset()) for extra in project_extras]
    seen: set[tuple[str, frozenset[str]]] = set()
    found: set[str] = set()
    project_done: set[str] = set()
    while todo:
        req, parent_extras = todo.pop()
        if not _applies(req, parent_extras):
            continue
        name = _name(req.name)
        if name == PROJECT:  # the project with extras: its dependencies and theirs
            for extra in ({""} | set(req.extras)) - project_done:
                project_done.add(extra)
                wanted = project["optional-dependencies"][extra] if extra else project["dependencies"]
                todo += [(Requirement(r), frozenset()) for r in wanted]
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(name)
        _installed_version(req.name)
        todo += [(Requirement(r), frozenset(req.extras)) for r in metadata.requires(req.name) or []]
    return found


@cache
def base_closure() -> frozenset[str]:
    """What `pip install .` installs."""
    return frozenset(closure(_pyproject()["dependencies"]))


def agent_requirements() -> list[str]:
    lines = (line.strip() for line in AGENT_IN.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


# ---------------------------------------------------------------- pyproject.toml


def test_the_extras_are_where_the_issue_puts_them() -> None:
    project = _pyproject()
    extras = project["optional-dependencies"]
    base = {_name(Requirement(r).name) for r in project["dependencies"]}
    assert not base & set(NOT_IN_BASE)

    def names(extra: str) -> set[str]:
        return {_name(Requirement(r).name) for r in extras[extra]}

    assert names("fake") == {"starlette", "uvicorn", "graphql-core", "jsonschema", "referencing"}
    assert names("examples") == {"scikit-learn"}
    assert names("sdk") == {"runpod"}
    [self_ref] = [Requirement(r) for r in extras["dev"] if _name(Requirement(r).name) == PROJECT]
    assert {"fake", "examples", "sdk"} <= self_ref.extras
    assert {"mypy", "ruff", "pytest"} <= names("dev")


def test_pip_install_without_extras_brings_no_server_library_no_sdk_and_no_scikit_learn() -> None:
    installed = base_closure()
    assert {"optuna", "optuna-dashboard", "boto3", "requests", "pydantic", "sqlalchemy", "alembic"} <= installed
    assert not installed & set(NOT_IN_BASE), sorted(installed & set(NOT_IN_BASE))


def test_the_closure_walks_extras_and_markers() -> None:
    # The walk is what the test above relies on: the extras do bring what the base does not ...
    fake = closure([], project_extras=["fake"])
    assert {"starlette", "uvicorn", "graphql-core", "jsonschema", "referencing", "anyio", "h11"} <= fake
    assert {"runpod", "fastapi", "starlette", "uvicorn"} <= closure([], project_extras=["sdk"])
    assert {"scikit-learn", "scipy", "joblib"} <= closure([], project_extras=["examples"])
    dev = closure([], project_extras=["dev"])
    assert set(NOT_IN_BASE) <= dev and base_closure() <= dev
    # ... an extra of a dependency counts only where asked for (moto[server] brings flask, moto does not) ...
    assert "flask" in closure(["moto[server]"]) and "flask" not in closure(["moto"])
    # ... and a marker that does not hold here brings nothing.
    assert closure(['uvicorn; python_version < "3"']) == set()


# ---------------------------------------------------------------- imports


def _blocked_modules(allowed: set[str]) -> list[str]:
    """Top-level modules of installed distributions outside ``allowed`` (and not the standard library's)."""
    allowed = {_name(a) for a in allowed} | {PROJECT}
    blocked = [
        module
        for module, dists in metadata.packages_distributions().items()
        if module.isidentifier()
        and module not in sys.stdlib_module_names
        and not {_name(d) for d in dists} & allowed
    ]
    return sorted(blocked)


PRELUDE = textwrap.dedent(
    """
    import json, sys
    # As if these were not installed: `import x` raises ModuleNotFoundError, find_spec("x") is None.
    for _module in json.loads(sys.argv[1]):
        if _module not in sys.modules:
            sys.modules[_module] = None
    """
)


def _python(code: str, blocked: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), json.dumps(blocked or [])],
        check=False, cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def _loaded_modules(code: str, blocked: list[str] | None = None) -> set[str]:
    done = _python(textwrap.dedent(code) + "\nprint(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))",
                   blocked)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_loads_no_server_library_and_no_scikit_learn() -> None:
    # In the full development environment: everything is installed, nothing of it may load.
    loaded = _loaded_modules(
        """
        import contextlib, io
        import hpo.cli
        for command in ([], ["run"], ["check"], ["status"], ["report"], ["cleanup"], ["dashboard"]):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                hpo.cli.main([*command, "--help"])
        """
    )
    assert "hpo" in loaded and "optuna" in loaded
    assert not loaded & set(SERVER_AND_EXAMPLE_MODULES), sorted(loaded & set(SERVER_AND_EXAMPLE_MODULES))


def test_everything_but_the_fake_imports_with_the_base_install_alone() -> None:
    """Every module of hpo/ and objectives/ but the fake's, with only what `pip install .` brings."""
    done = _python(
        """
        import importlib, pkgutil
        import hpo, objectives
        names = []
        for package in (hpo, objectives):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                if not info.name.startswith("hpo.fake_runpod") and not info.name.endswith(".__main__"):
                    importlib.import_module(info.name)
                    names.append(info.name)
        import hpo.agent.__main__, hpo.cli
        print(len(names))
        """,
        _blocked_modules(set(base_closure())),
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 40


def test_without_the_fake_extra_the_fake_names_it() -> None:
    blocked = _blocked_modules(set(base_closure()))
    assert {"starlette", "uvicorn", "graphql", "jsonschema"} <= set(blocked)
    imported = _python("import hpo.fake_runpod", blocked)
    assert imported.returncode != 0
    assert "pip install 'runpod-hpo[fake]'" in imported.stderr.strip().splitlines()[-1]
    # `python -m hpo.fake_runpod` (runpy's own entry) says the same.
    run = _python(
        """
        import runpy
        sys.argv = ["-m", "--help"]
        runpy._run_module_as_main("hpo.fake_runpod")
        """,
        blocked,
    )
    assert run.returncode != 0 and "pip install 'runpod-hpo[fake]'" in run.stderr
    # With the extra (the development environment), it imports.
    assert _python("import hpo.fake_runpod").returncode == 0


def _imports(path: Path) -> set[str]:
    """The top-level modules a source file imports (absolute imports, anywhere in the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_only_the_fake_imports_the_fake_extras_libraries_and_nothing_imports_the_runpod_sdk() -> None:
    fake_modules = {"starlette", "uvicorn", "graphql", "jsonschema", "referencing"}
    for path in sorted((REPO / "hpo").rglob("*.py")) + sorted((REPO / "objectives").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        imported = _imports(path)
        # hpo's RunPod client speaks the REST API itself (hpo/backends/runpod/_api.py): no SDK.
        assert "runpod" not in imported, rel
        if not rel.startswith("hpo/fake_runpod/"):
            assert not imported & fake_modules, (rel, sorted(imported & fake_modules))
        if rel.startswith("hpo/"):
            assert "sklearn" not in imported, rel  # the examples' only


# ---------------------------------------------------------------- the trial image's agent


def test_the_agent_imports_nothing_beyond_docker_agent_in() -> None:
    """A pod has docker/agent.in's closure (plus F5-TTS's): the agent, the backends (a pod ends itself
    through the RunPod client), the volumes (S3 too), the journal and the config import with that alone,
    and so does the controller a remote controller's pod runs (``hpo run --remote``: the same image)."""
    agent = closure(agent_requirements())
    assert {"optuna", "boto3", "requests", "pydantic", "pyyaml", "psutil", "tenacity", "numpy"} <= agent
    controller_only = {"optuna-dashboard", "plotly", "pandas", "rich", "matplotlib"}
    assert not agent & (set(NOT_IN_BASE) | controller_only)
    loaded = _loaded_modules(
        """
        import importlib, pkgutil
        import hpo.agent.__main__, hpo.code, hpo.config, hpo.journal
        for name in ("hpo.agent", "hpo.backends", "hpo.volume"):
            package = importlib.import_module(name)
            for info in pkgutil.walk_packages(package.__path__, name + "."):
                if not info.name.endswith(".__main__"):
                    importlib.import_module(info.name)
        import requests, hpo.backends.runpod, hpo.volume._s3
        import hpo.remote._pod, hpo.controller
        from hpo.controller import LineProgress, StudyTally
        LineProgress().message("a remote controller's line")
        """,
        _blocked_modules(agent),
    )
    assert {"hpo", "optuna", "boto3", "requests", "tenacity", "pydantic"} <= loaded
