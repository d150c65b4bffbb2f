"""The command line's shape: commands loaded only when run, ``--version``, ``-v`` anywhere, ``hpo list``,
a finished study rerun, and a reader that leaves (``| head``).

Studies are written straight into their journal (Optuna's own API over the
controller's journal writer), so no trial process runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from studyfiles import REPO, hpo_in_process, make_workspace, study_config, study_volume

from hpo import __version__
from hpo.cli import COMMANDS, build_parser, named_command
from hpo.journal import open_storage
from hpo.layout import StudyLayout

HEAVY = ("optuna", "pandas", "plotly", "matplotlib", "boto3", "botocore", "rich", "numpy", "pydantic", "yaml", "sqlalchemy")


def _python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


def write_trials(studies: Path, name: str, ends: list[TrialState | None], cache: Path) -> None:
    """Give study ``name`` one trial per entry of ``ends``, finished in that state (None: left running)."""
    config = study_config(studies, name)
    storage = open_storage(study_volume(config), name, writer=True, cache_dir=cache)
    study = optuna.create_study(study_name=name, storage=storage.optuna, direction=config.direction)
    for number, end in enumerate(ends):
        trial = study.ask(config.distributions())
        trial.report(1.0 + number, 1)
        if end is not None:
            study.tell(trial, 1.0 + number if end == TrialState.COMPLETE else None, state=end)
    storage.flush()


# -- loading per command ------------------------------------------------------------------


def test_help_loads_no_command_and_nothing_heavy() -> None:
    done = _python(
        f"""
        import contextlib, io, json, sys
        from hpo.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
            main(["--help"])
        assert "logs" in out.getvalue() and "list" in out.getvalue(), out.getvalue()
        heavy = {HEAVY!r}
        print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in heavy or m.startswith("hpo.cli._"))))
        """
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_command_loads_its_own_module_only() -> None:
    done = _python(
        """
        import contextlib, io, json, sys
        from hpo.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["logs", "--help"])
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("hpo.cli._"))))
        """
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["hpo.cli._common", "hpo.cli._logs"]


def test_the_lazy_listing_says_what_the_commands_themselves_say() -> None:
    """``hpo --help`` lists COMMANDS' help; each module gives its subparser the same (with every module loaded)."""
    assert build_parser([]).format_help() == build_parser().format_help()
    assert list(build_parser()._subparsers._group_actions[0].choices) == list(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_help(command: str) -> None:
    result = hpo_in_process(command, "--help")
    assert result.returncode == 0 and f"usage: hpo {command}" in result.stdout


def test_the_command_is_the_first_word_that_is_not_an_option() -> None:
    assert named_command(["-v", "--verbose", "logs", "--study", "run"]) == "logs"
    assert named_command(["--help"]) is None and named_command(["nope"]) is None


def test_version() -> None:
    result = hpo_in_process("--version")
    assert (result.returncode, result.stdout) == (0, f"hpo {__version__}\n")


def test_verbose_counts_before_and_after_the_command() -> None:
    argv = ["-v", "status", "--study", "demo", "-v", "-v"]
    args = build_parser(argv).parse_args(argv)
    assert (args.verbose, args.command_verbose) == (1, 2)
    argv = ["list", "-v"]
    args = build_parser(argv).parse_args(argv)
    assert (args.verbose, args.command_verbose) == (0, 1)


# -- hpo list -------------------------------------------------------------------------------


def _list_workspace(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Three studies: ``steady`` finished (4 of 4), ``mini`` in progress (2 of 10, 1 running), ``pods`` never run."""
    studies = make_workspace(tmp_path / "ws", trials=4)
    cache = tmp_path / "writer"
    write_trials(studies, "steady", [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE], cache)
    write_trials(studies, "mini", [TrialState.COMPLETE, TrialState.COMPLETE, None], cache)
    return studies, {"HPO_CACHE_DIR": str(tmp_path / "cache")}


def test_list_shows_each_study_with_trials_done_and_best_value(tmp_path: Path) -> None:
    studies, env = _list_workspace(tmp_path)
    result = hpo_in_process("list", "--studies", str(studies), env=env)
    assert result.returncode == 0 and result.stderr == ""
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert list(rows) == ["study", "mini", "steady", "pods"]
    assert rows["steady"][:8] == ["steady", "local", "finished", "4/4", "2", "1", "1", "0"]
    assert " ".join(rows["steady"][8:]) == "1 (trial 0)"
    assert rows["mini"][:3] == ["mini", "local", "in"] and rows["mini"][4:9] == ["2/10", "2", "0", "0", "1"]
    assert " ".join(rows["pods"][2:5]) == "not started 0/4"


def test_list_json(tmp_path: Path) -> None:
    studies, env = _list_workspace(tmp_path)
    result = hpo_in_process("list", "--studies", str(studies), "--json", env=env)
    assert result.returncode == 0, result.stderr
    studies_json = {s["study"]: s for s in json.loads(result.stdout)["studies"]}
    assert studies_json["steady"] == {
        "study": "steady", "backend": "local", "state": "finished", "budget": 4, "done": 4, "complete": 2, "pruned": 1,
        "failed": 1, "running": 0, "best_value": 1.0, "best_trial": 0, "problem": None,
    }
    assert studies_json["mini"]["state"] == "in progress" and studies_json["mini"]["running"] == 1
    assert studies_json["pods"]["state"] == "not started" and studies_json["pods"]["done"] == 0


def test_list_names_a_template_and_an_unreadable_study_and_lists_the_rest(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "ws")
    studies.write_text(studies.read_text().replace("image: ghcr.io/example/hpo-trial:test", "image: ghcr.io/<you>/trial:1"))
    # mini's journal: one segment whose line is not JSON.
    study_volume(study_config(studies, "mini")).write_bytes(StudyLayout("mini").journal_segment(0), b"garbage\n")
    result = hpo_in_process("list", "--studies", str(studies), env={"HPO_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "not set up" in rows["pods"] and "hpo check --study pods" in rows["pods"]
    assert "unreadable" in rows["mini"] and "not started" in rows["steady"]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line: the unreadable study
    assert result.stderr.startswith("hpo: error: study 'mini': cannot read its storage: ")
    assert "000000000000.jsonl" in result.stderr


def test_list_of_a_bad_studies_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = hpo_in_process("list", "--studies", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "missing.yaml" in result.stderr and "Traceback" not in result.stderr


# -- a finished study, rerun ------------------------------------------------------------------


def test_rerunning_a_finished_study_says_so(tmp_path: Path) -> None:
    studies = make_workspace(tmp_path / "ws", trials=2)
    write_trials(studies, "steady", [TrialState.COMPLETE, TrialState.PRUNED], tmp_path / "writer")
    env = {"HPO_CACHE_DIR": str(tmp_path / "cache")}
    result = hpo_in_process("run", "--study", "steady", "--studies", str(studies), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "study steady is finished: 2 of 2 trials; raise budget.trials to run more\n"

    scripted = hpo_in_process("run", "--study", "steady", "--studies", str(studies), "--json", env=env)
    assert scripted.returncode == 0, scripted.stderr
    summary = json.loads(scripted.stdout)
    assert (summary["complete"], summary["pruned"], summary["running"]) == (1, 1, 0)


# -- a reader that leaves ---------------------------------------------------------------------


def test_a_reader_that_leaves_ends_the_command_quietly(tmp_path: Path) -> None:
    """``hpo logs ... | head -1``: no traceback when the pipe closes, and the exit status a shell expects."""
    studies = make_workspace(tmp_path / "ws")
    volume = study_volume(study_config(studies, "steady"))
    volume.append_bytes(StudyLayout("steady").log(0, 0), b"a line of the log\n" * 200_000)  # far more than a pipe holds
    env = {**os.environ, "HPO_CACHE_DIR": str(tmp_path / "cache")}
    with subprocess.Popen(
        [sys.executable, "-m", "hpo", "logs", "--study", "steady", "--studies", str(studies), "--trial", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"a line of the log\n"
        proc.stdout.close()
        stderr = proc.stderr.read()
        assert proc.wait(timeout=120) == 141
    assert stderr == b""
