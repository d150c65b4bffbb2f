"""The trial image, read from docker/Dockerfile: no Docker engine runs here, so the file itself is checked.

A small parser turns the Dockerfile into instructions (continuation lines
joined, comments dropped); the tests hold the properties a pod relies on:
the base image, linux/amd64, F5-TTS pinned and outside /workspace, the
project's dependencies without a torch reinstall, caches on the volume, the
agent started by CMD with no ENTRYPOINT, and a build context that leaves out
.venv, storage and .git. The lock files are read too: every pip install of
the image uses docker/image.lock, the F5-TTS install also docker/constraints.txt
(the releases of F5-TTS's open dependencies that work with torch 2.4, which
the image lock obeys), and .ci/run installs from requirements/dev.lock;
both pin, exactly, what they are made from: pyproject.toml with its `dev` extra
for the dev lock; the agent's share of pyproject.toml's dependencies
(docker/agent.in) and F5-TTS's for the image's, which holds none of the fake
RunPod API's libraries, the runpod SDK or the controller's own.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"  # the build context is the repository root
BASE_IMAGE = "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"  # -runtime: nothing in the image compiles
F5_TTS_COMMIT = "655fbca5529b68e36d7b8f2d6d131f68132156fe"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: keyword (upper case) and arguments, continuation lines joined."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # a comment (or parser directive), also inside a continued instruction
        if not pending:
            if not stripped:
                continue
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        pending += stripped
        keyword, _, args = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    """Every ``ENV`` and ``ARG`` default, in order (later ones win)."""
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword in ("ENV", "ARG"):
            for item in shlex.split(ins.args):
                name, sep, value = item.partition("=")
                if sep:
                    values[name] = value
    return values


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _runs(instructions: list[Instruction]) -> list[Instruction]:
    return [i for i in instructions if i.keyword == "RUN"]


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a\n\nRUN one \\\n  # inside\n  two\nCMD [\"x\"]\n")
    assert [(i.keyword, i.args) for i in parsed] == [("FROM", "a"), ("RUN", "one two"), ("CMD", '["x"]')]


def test_one_stage_on_the_users_base_image_for_linux_amd64(instructions: list[Instruction]) -> None:
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 1
    assert froms[0].args.split() == ["--platform=linux/amd64", BASE_IMAGE]
    assert instructions[0].keyword == "FROM"


def test_f5_tts_is_pinned_to_the_commit_and_installed_outside_the_volume(instructions: list[Instruction]) -> None:
    assert env_values(instructions)["F5_TTS_COMMIT"] == F5_TTS_COMMIT
    [install] = [i for i in _runs(instructions) if "SWivid/F5-TTS" in i.args]
    words = shlex.split(install.args.replace("&&", " && "))
    target = PurePosixPath(words[words.index("https://github.com/SWivid/F5-TTS.git") + 1])
    assert target.is_absolute() and not target.is_relative_to("/workspace")
    assert 'git checkout --detach "${F5_TTS_COMMIT}"' in install.args
    assert f"pip install --no-cache-dir -e {target}" in install.args
    # The build fails if the checkout is anything but the pinned commit.
    assert f'test "$(git -C {target} rev-parse HEAD)" = "${{F5_TTS_COMMIT}}"' in install.args


def test_the_projects_runtime_dependencies_are_installed_without_replacing_the_base_torch(
    instructions: list[Instruction],
) -> None:
    copies = [i.args.split() for i in instructions if i.keyword == "COPY"]
    assert ["pyproject.toml", "README.md", "/opt/runpod-hpo/"] in copies
    assert ["hpo/", "/opt/runpod-hpo/hpo/"] in copies
    runs = [i.args for i in _runs(instructions)]
    install = next(r for r in runs if any(c[-1:] == ["/opt/runpod-hpo"] for c in _commands(r) if "pip" in c))
    assert "[" not in install and "torch" not in install.replace("/opt/runpod-hpo", "")  # no extra, no torch
    # The constraints naming the base's torch builds are in force before the first pip install.
    first_pip = next(i.line for i in _runs(instructions) if "pip install" in i.args)
    constraint = next(i for i in instructions if i.keyword == "ENV" and "PIP_CONSTRAINT=" in i.args)
    assert constraint.line < first_pip
    made = next(r for r in runs if "/opt/base-torch.txt" in r)
    assert env_values(instructions)["PIP_CONSTRAINT"] == "/opt/base-torch.txt"
    assert "'torch', 'torchvision', 'torchaudio'" in made and "grep -q '^torch==' /opt/base-torch.txt" in made
    # ... and a build where torch changed anyway fails.
    assert any("torch.version.cuda == '12.4'" in r for r in runs)


def test_the_projects_torch_extra_pins_the_cpu_release_exactly() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["torch"] == ["torch==2.13.0"]
    assert [d for d in extras["dev"] if d.startswith("torch")] == ["torch==2.13.0"]


def test_caches_live_on_the_volume_and_output_is_unbuffered(instructions: list[Instruction]) -> None:
    env = env_values(instructions)
    for name in ("HF_HOME", "PIP_CACHE_DIR", "TORCH_HOME"):
        assert PurePosixPath(env[name]).is_relative_to("/workspace/.cache"), name
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "PIP_NO_CACHE_DIR" not in env  # it would disable the cache on the volume in the pod


def test_cmd_starts_the_agent_and_there_is_no_entrypoint(instructions: list[Instruction]) -> None:
    assert not [i for i in instructions if i.keyword == "ENTRYPOINT"]
    cmds = [i for i in instructions if i.keyword == "CMD"]
    assert len(cmds) == 1 and instructions[-1] == cmds[0]
    # Exec form, under tini as PID 1: SIGTERM reaches the agent, and orphans of a warm worker's attempts are reaped.
    assert json.loads(cmds[0].args) == ["tini", "--", "python", "-m", "hpo.agent"]


def test_the_working_directory_is_not_the_volume(instructions: list[Instruction]) -> None:
    workdirs = [i.args for i in instructions if i.keyword == "WORKDIR"]
    assert workdirs and not PurePosixPath(workdirs[-1]).is_relative_to("/workspace")


# ---------------------------------------------------------------- .dockerignore


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        forms = [pattern]
        if pattern.startswith("**/"):
            forms.append(pattern[3:])
        # fnmatch's `*` also matches `/`: close enough to Docker's for these patterns.
        matched = any(fnmatch.fnmatchcase(c, f) for c in candidates for f in forms)
        if matched:
            verdict = not negate
    return verdict


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "storage/hpo/demo/journal/0.jsonl", ".git/HEAD", "tests/test_agent.py",
     ".pytest_cache/v/x", "hpo/__pycache__/spec.cpython-311.pyc", "objectives/digits_mlp.py"],
)
def test_the_build_context_leaves_out(ignore_patterns: list[str], path: str) -> None:
    assert _ignored(ignore_patterns, path)


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "hpo/agent/__main__.py", "hpo/volume/_s3.py", "docker/image.lock",
     "docker/constraints.txt"],
)
def test_the_build_context_keeps(ignore_patterns: list[str], path: str) -> None:
    assert not _ignored(ignore_patterns, path)


def test_every_copied_source_is_in_the_build_context(instructions: list[Instruction], ignore_patterns: list[str]) -> None:
    for ins in (i for i in instructions if i.keyword == "COPY"):
        *sources, _dest = ins.args.split()
        for source in sources:
            found = list(REPO.glob(source.rstrip("/") + ("/**/*.py" if source.endswith("/") else "")))
            assert found, f"COPY {source}: nothing in the repository"
            for path in found:
                rel = path.relative_to(REPO).as_posix()
                if "__pycache__" not in rel:
                    assert not _ignored(ignore_patterns, rel), f"COPY {source}: {rel} is excluded by .dockerignore"


def test_the_readme_gives_the_build_command_and_explains_cmd() -> None:
    readme = (REPO / "docker" / "README.md").read_text()
    assert "docker buildx build --platform linux/amd64 -f docker/Dockerfile" in readme
    assert "-t ghcr.io/<you>/runpod-hpo-trial:<tag> --push ." in readme
    assert "ENTRYPOINT" in readme and "Unmeasured" in readme


# ---------------------------------------------------------------- lock files

IMAGE_LOCK = REPO / "docker" / "image.lock"
AGENT_IN = REPO / "docker" / "agent.in"
DEV_LOCK = REPO / "requirements" / "dev.lock"
LOCK_IN_IMAGE = "/opt/runpod-hpo/image.lock"
# The base image's own build of these: the image lock must leave them alone.
BASE_PACKAGES = ("torch", "torchaudio", "torchvision", "triton")
# The interpreter both locks are resolved for: CI's and the trial image's.
TARGET = {"python_version": "3.11", "python_full_version": "3.11.9", "platform_machine": "x86_64",
          "platform_system": "Linux", "sys_platform": "linux", "os_name": "posix", "extra": ""}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def read_lock(path: Path) -> dict[str, Requirement]:
    """The pins of a pip-tools lock, by normalised name; every line must be an exact `==` pin."""
    pins: dict[str, Requirement] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        assert not line[0].isspace() and not line.startswith("-"), f"{path.name}:{number}: not a pin: {line!r}"
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}:{number}: not an exact pin: {line!r}"
        [spec] = specs
        assert "+" not in spec.version and "*" not in spec.version, f"{path.name}:{number}: {line!r}"
        assert not req.url and not req.extras, f"{path.name}:{number}: {line!r}"
        assert _name(req.name) not in pins, f"{path.name}:{number}: {req.name} pinned twice"
        pins[_name(req.name)] = req
    return pins


def _satisfied(lock: dict[str, Requirement], wanted: list[str], *, skip: tuple[str, ...] = ()) -> None:
    """Every requirement in ``wanted`` that applies on the target is pinned, at a version it accepts."""
    for text in wanted:
        req = Requirement(text)
        if _name(req.name) in skip or (req.marker is not None and not req.marker.evaluate(TARGET)):
            continue
        assert _name(req.name) in lock, f"{req.name} is not in the lock"
        [pin] = list(lock[_name(req.name)].specifier)
        assert req.specifier.contains(pin.version, prereleases=True), f"lock pins {req.name}=={pin.version}, wanted {text}"


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a shell line, split at ``&&``, ``||``, ``;`` and ``|`` outside quotes."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def test_the_command_splitter_keeps_quoted_operators() -> None:
    assert _commands('a "x && y" && b -c \'p; q\' | c') == [["a", "x && y"], ["b", "-c", "p; q"], ["c"]]


def _pip_installs(instructions: list[Instruction]) -> list[tuple[int, list[str]]]:
    """Every ``pip install`` command of the Dockerfile's RUNs: (line of the RUN, words)."""
    return [
        (ins.line, words)
        for ins in _runs(instructions)
        for words in _commands(ins.args)
        if "pip" in words and "install" in words
    ]


def _copied_at(instructions: list[Instruction], source: str, dest: str) -> int:
    """The line of the one ``COPY`` that puts ``source`` at ``dest`` (a file, or a folder ending in ``/``)."""
    found = []
    for ins in (i for i in instructions if i.keyword == "COPY"):
        *sources, target = ins.args.split()
        lands = target if not target.endswith("/") else target + PurePosixPath(source).name
        if source in sources and lands == dest:
            found.append(ins.line)
    assert len(found) == 1, f"{source} is copied to {dest} {len(found)} times"
    return found[0]


def test_every_pip_install_in_the_dockerfile_uses_the_image_lock(instructions: list[Instruction]) -> None:
    copied_at = _copied_at(instructions, "docker/image.lock", LOCK_IN_IMAGE)
    installs = _pip_installs(instructions)
    for line, words in installs:
        command = " ".join(words)
        assert line > copied_at, f"line {line}: pip install before the lock is copied in"
        constraints = [words[n + 1] for n, word in enumerate(words[:-1]) if word in ("-c", "--constraint")]
        constraints += [word.split("=", 1)[1] for word in words if word.startswith("--constraint=")]
        assert LOCK_IN_IMAGE in constraints, f"line {line}: {command.strip()!r} does not use the lock"
        assert not [w for w in words if w.startswith(("-U", "--upgrade", "--force-reinstall"))]
    # F5-TTS; the agent's dependencies; this project, the only one without its dependencies (the
    # controller's): whatever it imports in a pod came with the install just before it.
    assert len(installs) == 3
    no_deps = [words for _, words in installs if "--no-deps" in words]
    assert no_deps == [installs[2][1]] and installs[2][1][-1] == "/opt/runpod-hpo"
    assert installs[1][0] == installs[2][0]  # one RUN: no layer has the project without the agent's libraries


CONSTRAINTS = REPO / "docker" / "constraints.txt"
CONSTRAINTS_IN_IMAGE = "/opt/runpod-hpo/constraints.txt"


def _constraints() -> dict[str, Requirement]:
    return {_name(Requirement(line).name): Requirement(line) for line in _requirement_lines(CONSTRAINTS)}


def test_the_constraints_hold_f5_tts_to_what_works_with_torch_2_4() -> None:
    wanted = _constraints()
    # x-transformers 2.18+ needs torch-einops-utils, which needs torch 2.5: one exact release, not a walk back.
    assert str(wanted["x-transformers"].specifier) == "==2.17.10"
    # transformers 5 turns PyTorch off beside torch 2.4; 4.x does not.
    assert not wanted["transformers"].specifier.contains("5.0.0") and wanted["transformers"].specifier.contains("4.57.6")
    # torchcodec's wheels are built for one torch each: 0.0.3 is torch 2.4's.
    assert str(wanted["torchcodec"].specifier) == "==0.0.3"
    assert not wanted["huggingface-hub"].specifier.contains("1.0.0")  # what transformers 4 requires
    assert not [name for name in wanted if name in BASE_PACKAGES]  # the base's torch is base-torch.txt's


def test_the_image_lock_obeys_the_constraints_and_the_f5_install_takes_them(instructions: list[Instruction]) -> None:
    assert "-c constraints.txt" in (REPO / "docker" / "image.in").read_text().splitlines()
    lock = read_lock(IMAGE_LOCK)
    for name, req in _constraints().items():
        assert name in lock, f"{name} is constrained but not locked"
        [pin] = list(lock[name].specifier)
        assert req.specifier.contains(pin.version), f"the lock pins {name}=={pin.version}, constraints.txt says {req}"
    copied_at = _copied_at(instructions, "docker/constraints.txt", CONSTRAINTS_IN_IMAGE)
    [(line, f5)] = [(line, words) for line, words in _pip_installs(instructions) if "/opt/F5-TTS" in words]
    assert line > copied_at
    constraints = [f5[n + 1] for n, word in enumerate(f5[:-1]) if word in ("-c", "--constraint")]
    assert constraints == [CONSTRAINTS_IN_IMAGE, LOCK_IN_IMAGE]
    # The lock script refuses a lock that breaks them (docker/image.in lost its -c line, say).
    assert "docker/constraints.txt" in (REPO / "requirements" / "update-locks.sh").read_text()


def test_the_build_fails_if_f5_tts_does_not_import_with_torch_2_4(instructions: list[Instruction]) -> None:
    checks = [i.args for i in _runs(instructions) if "import transformers" in i.args]
    assert len(checks) == 1
    assert "from f5_tts.model import CFM, DiT" in checks[0]  # imports x-transformers' rotary embedding
    assert "assert is_torch_available()" in checks[0]  # transformers 5 beside torch 2.4 would say False


def test_the_readme_estimates_the_size_of_the_runtime_image() -> None:
    size = (REPO / "docker" / "README.md").read_text().split("## Size", 1)[1].split("\n## ", 1)[0]
    assert "An estimate" in size and "cudnn9-runtime" in size
    assert "the image** | **about" in size


def _requirement_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def test_the_image_installs_the_agents_share_of_the_projects_dependencies(instructions: list[Instruction]) -> None:
    agent = _requirement_lines(AGENT_IN)
    # docker/agent.in holds lines of pyproject.toml's dependencies, verbatim, and no extra.
    assert agent and set(agent) <= set(_pyproject()["dependencies"])
    # The Dockerfile installs exactly those (it names them: the build context has no docker/agent.in).
    _, words = _pip_installs(instructions)[1]
    named = [w for n, w in enumerate(words) if n > words.index("install") and not w.startswith("-")
             and words[n - 1] not in ("-c", "--constraint")]
    assert named == agent
    # None of the controller's own libraries, none of the extras' (the fake's, the SDK, the examples').
    names = {_name(Requirement(line).name) for line in agent}
    assert not names & {"optuna-dashboard", "rich", "pandas", "plotly", "matplotlib", "runpod", "starlette",
                        "uvicorn", "graphql-core", "jsonschema", "referencing", "scikit-learn"}


def test_the_image_lock_pins_what_the_image_installs_and_leaves_the_base_torch_alone() -> None:
    lock = read_lock(IMAGE_LOCK)
    assert not [name for name in lock if name in BASE_PACKAGES or name.startswith("nvidia-")]
    assert "--hash" not in IMAGE_LOCK.read_text()
    _satisfied(lock, _requirement_lines(AGENT_IN))
    wanted = _requirement_lines(REPO / "docker" / "image.in")
    assert any(line.startswith("gradio") for line in wanted)  # F5-TTS's list is there
    _satisfied(lock, wanted, skip=BASE_PACKAGES)


def read_lock_via(path: Path) -> dict[str, set[str]]:
    """Each pin's ``# via`` sources (pip-tools' annotations): package names, or ``-r FILE``."""
    via: dict[str, set[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = _name(Requirement(line).name)
            via[current] = set()
        elif current and line.strip().startswith("#"):
            text = line.strip().lstrip("#").strip()
            text = text.removeprefix("via").strip()
            if text:
                via[current].add(text if text.startswith("-r ") else _name(text.split(" (")[0]))
        elif not line.strip():
            current = ""
    return via


# Never in the image: the fake RunPod API's libraries, the runpod SDK, the controller's dashboard and plots.
NOT_IN_IMAGE = ("graphql-core", "jsonschema", "referencing", "runpod", "optuna-dashboard", "bottle", "plotly")
# In the image only because F5-TTS asks for them (gradio: a web UI on FastAPI; librosa: scikit-learn).
F5_TTS_ONLY = ("starlette", "uvicorn", "fastapi", "scikit-learn")


def test_the_image_lock_has_none_of_the_fakes_or_the_controllers_libraries() -> None:
    lock = read_lock(IMAGE_LOCK)
    via = read_lock_via(IMAGE_LOCK)
    assert set(via) == set(lock)
    assert not [name for name in NOT_IN_IMAGE if name in lock]
    assert not any("runpod-hpo" in sources or "pyproject.toml" in " ".join(sources) for sources in via.values())
    # What the agent's requirements bring, followed down the lock's `via` annotations.
    needed_by: dict[str, set[str]] = {}
    for name, sources in via.items():
        for source in sources:
            needed_by.setdefault(source, set()).add(name)
    reached, todo = set(), list(needed_by["-r docker/agent.in"])
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(needed_by.get(name, ()))
    assert {"optuna", "boto3", "requests", "pydantic", "sqlalchemy"} <= reached
    assert not reached & set(NOT_IN_IMAGE + F5_TTS_ONLY)
    for name in F5_TTS_ONLY:
        assert name not in lock or not via[name] & {"-r docker/agent.in"}


def test_the_image_lock_is_resolved_for_the_base_images_torch(instructions: list[Instruction]) -> None:
    pins = read_lock(REPO / "docker" / "base-torch.txt")
    base_version = BASE_IMAGE.split(":")[1].split("-")[0]
    assert str(pins["torch"].specifier) == f"=={base_version}"
    assert "-c base-torch.txt" in (REPO / "docker" / "image.in").read_text().splitlines()
    # ... and F5-TTS's list in image.in belongs to the commit the Dockerfile checks out.
    assert F5_TTS_COMMIT in (REPO / "docker" / "image.in").read_text()
    assert env_values(instructions)["F5_TTS_COMMIT"] == F5_TTS_COMMIT


def _with_extras(extras: list[str]) -> list[str]:
    """pyproject.toml's dependencies with those of ``extras``, an extra naming others (``runpod-hpo[a,b]``)
    replaced by theirs."""
    project = _pyproject()
    wanted, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if _name(req.name) == _name(project["name"]):
                todo.extend(req.extras)
            else:
                wanted.append(text)
    return wanted


def test_the_dev_lock_pins_the_readmes_install_and_ci_installs_from_it() -> None:
    lock = read_lock(DEV_LOCK)
    assert "runpod-hpo" not in lock  # the project itself is installed from the checkout, never pinned
    wanted = _with_extras(["dev"])
    assert {"starlette", "scikit-learn", "runpod", "mypy", "ruff"} <= {_name(Requirement(w).name) for w in wanted}
    _satisfied(lock, wanted)
    assert str(lock["torch"].specifier) == "==2.13.0"  # the release, never a local build's label
    assert "--hash" not in DEV_LOCK.read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "pip install -c requirements/dev.lock -e '.[dev]'" in ci
    assert not re.search(r"^\s*pip install -e", ci, re.MULTILINE)  # no install that skips the lock
    assert "pip install -e '.[dev]'" in (REPO / "README.md").read_text()  # the README's command is unchanged


def test_the_locks_are_remade_by_one_script() -> None:
    script = (REPO / "requirements" / "update-locks.sh").read_text()
    assert "--output-file requirements/dev.lock pyproject.toml" in script
    assert "--output-file docker/image.lock docker/agent.in docker/image.in" in script
    assert "--strip-extras" in script and "--generate-hashes" not in script
