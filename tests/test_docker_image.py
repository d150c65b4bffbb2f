"""The trial image, read from docker/Dockerfile: no Docker engine runs here, so the file itself is checked.

A small parser turns the Dockerfile into instructions (continuation lines
joined, comments dropped); the tests hold the properties a pod relies on:
the base image, linux/amd64, F5-TTS pinned and outside /workspace, the
project's dependencies without a torch reinstall, caches on the volume, the
agent started by CMD with no ENTRYPOINT, and a build context that leaves out
.venv, storage and .git.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"  # the build context is the repository root
BASE_IMAGE = "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-devel"
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
    install = next(r for r in runs if "pip install" in r and "/opt/runpod-hpo" in r)
    assert "[torch]" not in install and "torch" not in install.replace("/opt/runpod-hpo", "")
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
    assert json.loads(cmds[0].args) == ["python", "-m", "hpo.agent"]  # exec form: the agent is PID 1 and gets SIGTERM


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


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "hpo/agent/__main__.py", "hpo/volume/_s3.py"])
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
