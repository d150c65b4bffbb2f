"""The F5-TTS objective and its study ``f5-lr``.

F5-TTS itself (with torchaudio and GBs of dependencies) is in the trial image,
not here: the test that trains a tiny F5 configuration (and checks that the
EMA restarts, is what is evaluated, and that the best EMA weights load into
F5-TTS's inference) runs where ``f5_tts`` is importable and is skipped
elsewhere. Everything else runs anywhere: the objective's parameter handling
and input checks, the batch refused for a GPU too small for it (the GPU
injected), the count of text tokens the vocabulary lacks, the pretrained
copy, the held-out split, a light import, and ``hpo run --study f5-lr``
launching the right pods on the fake RunPod API. The EMA, best-weights and
timed-checkpoint logic the F5 objective shares with ``tiny_torch`` is tested
on the CPU in ``tests/test_torch_resume.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hpo.agent import AgentTrial
from hpo.config import load_study
from hpo.events import ReportEvent
from hpo.fake_runpod import FakeRunPod
from hpo.layout import StudyLayout
from hpo.spec import TrialSpec
from hpo.volume import DirectoryVolume
from objectives import f5_tts as f5
from objectives._gpu import GIB, GpuInfo
from objectives._vocab import read_vocab, unknown_tokens

REPO = Path(__file__).resolve().parent.parent
F5_SPACE = {
    "learning_rate": {"type": "float", "low": 3e-6, "high": 1e-4, "log": True},
    "batch_size_per_gpu": {"type": "categorical", "choices": [3200, 4800, 6400, 9600]},
    "num_warmup_updates": {"type": "int", "low": 100, "high": 2000},
}
F5_PARAMS = {"learning_rate": 1e-4, "batch_size_per_gpu": 6400, "num_warmup_updates": 300}
# Total memory as torch reports it (nvidia-smi's MiB, ECC off).
RTX_A4000 = GpuInfo("NVIDIA RTX A4000", 16376 * 2**20)
RTX_A5000 = GpuInfo("NVIDIA RTX A5000", 24564 * 2**20)


def make_trial(
    root: Path, params: dict[str, Any], space: dict[str, Any], *, max_step: int = 10, eval_interval: int = 5
) -> tuple[AgentTrial, list[Any]]:
    """The agent's trial object for trial 0 of study ``f5`` on a directory volume; its events land in the list."""
    events: list[Any] = []
    spec = TrialSpec(
        study="f5", trial=0, objective="f5_tts", params=params, search_space=space,
        max_step=max_step, eval_interval=eval_interval, step_unit="update",
    )
    return AgentTrial(spec, 0, DirectoryVolume(root), events.append), events


# ---------------------------------------------------------------- settings and checks


def test_the_required_parameters_are_read_and_the_others_default(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, F5_PARAMS, F5_SPACE)
    settings = f5.settings_from_trial(trial)
    assert (settings.learning_rate, settings.batch_size_per_gpu, settings.num_warmup_updates) == (1e-4, 6400, 300)
    assert (settings.max_grad_norm, settings.weight_decay, settings.max_samples) == (1.0, 0.01, 64)
    assert settings.pretrained == Path("/workspace/f5/pretrained/model_1250000.safetensors")
    assert settings.vocab == Path("/workspace/f5/data/dataset/vocab.txt")


def test_a_study_may_search_the_optional_parameters_and_move_the_inputs(tmp_path: Path) -> None:
    space = {
        **F5_SPACE,
        "max_grad_norm": {"type": "categorical", "choices": [0.5, 2.0]},
        "weight_decay": {"type": "float", "low": 1e-4, "high": 0.1},
        "dataset": {"type": "categorical", "choices": ["/workspace/f5/data/other"]},
    }
    params = {**F5_PARAMS, "max_grad_norm": 2.0, "weight_decay": 0.05, "dataset": "/workspace/f5/data/other"}
    settings = f5.settings_from_trial(make_trial(tmp_path, params, space)[0])
    assert (settings.max_grad_norm, settings.weight_decay) == (2.0, 0.05)
    assert settings.vocab == Path("/workspace/f5/data/other/vocab.txt")


def test_a_missing_required_parameter_names_the_study(tmp_path: Path) -> None:
    space = {k: v for k, v in F5_SPACE.items() if k != "num_warmup_updates"}
    trial, _ = make_trial(tmp_path, {k: v for k, v in F5_PARAMS.items() if k in space}, space)
    with pytest.raises(ValueError, match="'num_warmup_updates' is not in the search space of study 'f5'"):
        f5.settings_from_trial(trial)


def test_values_f5_cannot_train_with_are_refused_by_name(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, {**F5_PARAMS, "batch_size_per_gpu": 0, "num_warmup_updates": -1}, F5_SPACE)
    with pytest.raises(ValueError, match=r"batch_size_per_gpu is in audio frames and must be >= 1 \(got 0\); "
                                         r"num_warmup_updates must be >= 0 \(got -1\)"):
        f5.settings_from_trial(trial)


def test_weight_decay_and_clipping_are_f5_ttss_values_unless_searched(tmp_path: Path) -> None:
    settings = f5.settings_from_trial(make_trial(tmp_path, F5_PARAMS, F5_SPACE)[0])
    assert (settings.weight_decay, settings.max_grad_norm) == (f5.WEIGHT_DECAY, f5.MAX_GRAD_NORM) == (0.01, 1.0)


# ---------------------------------------------------------------- the batch and the GPU


def test_the_batch_limit_is_f5_ttss_own_rule() -> None:
    # src/f5_tts/train/finetune_gradio.py: int(38400 * (total_memory / 1024**3 - 5) / 75)
    for gpu in (RTX_A4000, RTX_A5000):
        assert f5.max_batch_frames(gpu) == int(38400 * (gpu.total_memory / 1024**3 - 5) / 75)
    assert (f5.max_batch_frames(RTX_A4000), f5.max_batch_frames(RTX_A5000)) == (5628, 9722)
    assert f5.max_batch_frames(GpuInfo("ECC on", 15 * GIB)) == 5120


def test_an_oversized_batch_is_refused_at_once_naming_the_gpu_its_memory_the_batch_and_the_limit(tmp_path: Path) -> None:
    trial, events = make_trial(tmp_path, {**F5_PARAMS, "batch_size_per_gpu": 6400}, F5_SPACE)
    with pytest.raises(ValueError) as info:
        f5.objective(trial, gpu=lambda: RTX_A4000)  # the inputs are not here: refused before they are looked for
    message = str(info.value)
    assert "batch_size_per_gpu=6400 audio frames does not fit" in message
    assert "NVIDIA RTX A4000 (16.0 GiB)" in message and "allows at most 5628 frames" in message
    assert "compute.gpu_types" in message
    assert events == []  # nothing recorded: the attempt ends before any work


def test_a_batch_that_fits_goes_on_to_the_inputs_and_records_the_gpu(tmp_path: Path) -> None:
    trial, events = make_trial(tmp_path, {**F5_PARAMS, "batch_size_per_gpu": 4800}, F5_SPACE)
    with pytest.raises(FileNotFoundError, match="missing on the volume"):
        f5.objective(trial, gpu=lambda: RTX_A4000)
    trial, _ = make_trial(tmp_path, {**F5_PARAMS, "batch_size_per_gpu": 9600}, F5_SPACE)
    with pytest.raises(FileNotFoundError):
        f5.objective(trial, gpu=lambda: None)  # no GPU (a CPU run): nothing to check
    f5.check_batch_fits(9722, RTX_A5000)
    with pytest.raises(ValueError, match="allows at most 9722 frames"):
        f5.check_batch_fits(9723, RTX_A5000)


# ---------------------------------------------------------------- text the vocabulary lacks


def test_read_vocab_reads_vocab_txt_as_f5_tts_does(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text(" \na\nzhong1\nb\n", encoding="utf-8")
    assert read_vocab(path) == {" ": 0, "a": 1, "zhong1": 2, "b": 3}


def test_tokens_outside_the_vocabulary_are_counted_named_and_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vocab = {" ": 0, "a": 1, "b": 2, "c": 3, "zhong1": 4}
    texts = [list("ab c"), list("aßc"), ["a", "zhong1", "guo2"], "abcßß"]
    counted = unknown_tokens(texts, vocab)
    assert (counted.total, counted.utterances, counted.examples()) == (4, 3, {"ß": 3, "guo2": 1})
    trial, events = make_trial(tmp_path, F5_PARAMS, F5_SPACE)
    assert f5.report_unknown_tokens(trial, texts, vocab, Path("/workspace/f5/data/dataset")) == 4
    assert [(e.key, e.value) for e in events] == [
        ("f5_unknown_tokens", {"total": 4, "utterances": 3, "examples": {"ß": 3, "guo2": 1}})
    ]
    out = capsys.readouterr().out
    assert out.startswith("WARNING f5_tts: /workspace/f5/data/dataset: 4 text token(s) in 3 utterance(s) are not in vocab.txt")
    assert "'ß' x3, 'guo2' x1" in out

    trial, events = make_trial(tmp_path, F5_PARAMS, F5_SPACE)
    assert f5.report_unknown_tokens(trial, [list("abc")], vocab, Path("/data")) == 0
    assert capsys.readouterr().out == "" and events[0].value == {"total": 0, "utterances": 0, "examples": {}}


def test_the_texts_are_read_in_chunks_of_the_datasets_text_column() -> None:
    class Raw:  # a datasets.Dataset's slicing: rows start..stop as a dict of columns
        def __init__(self, texts: list[list[str]]) -> None:
            self.texts = texts

        def __len__(self) -> int:
            return len(self.texts)

        def __getitem__(self, rows: slice) -> dict[str, Any]:
            return {"text": self.texts[rows], "audio_path": ["x"] * len(self.texts[rows])}

    texts = [[str(i)] for i in range(10)]
    assert list(f5.iter_texts(Raw(texts), chunk=3)) == texts


def test_missing_inputs_are_all_named_with_where_to_upload_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_VOLUME_ID", "abc123defg")
    settings = f5.F5Settings(1e-4, 3200, 100, pretrained=Path("/workspace/f5/none.safetensors"),
                             dataset=Path("/workspace/f5/data/none"))
    with pytest.raises(FileNotFoundError) as info:
        f5.check_inputs(settings)
    message = str(info.value)
    assert "the pretrained weights /workspace/f5/none.safetensors (upload to s3://abc123defg/f5/none.safetensors)" in message
    assert "the dataset folder /workspace/f5/data/none" in message and "s3://abc123defg/f5/data/none" in message


def test_an_incomplete_dataset_names_each_missing_file(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "duration.json").write_text("{}")
    settings = f5.F5Settings(1e-4, 3200, 100, pretrained=tmp_path / "model.safetensors", dataset=tmp_path / "data")
    with pytest.raises(FileNotFoundError) as info:
        f5.check_inputs(settings)
    message = str(info.value)
    assert f"{tmp_path / 'data' / 'raw.arrow'} (written by F5-TTS's prepare_csv_wavs.py)" in message
    assert f"{tmp_path / 'data' / 'vocab.txt'}" in message and "duration.json" not in message
    assert "pretrained" not in message.split("missing on the volume:")[1].split(";")[0]


def test_pickled_pretrained_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model_1200000.pt").write_bytes(b"x")
    settings = f5.F5Settings(1e-4, 3200, 100, pretrained=tmp_path / "model_1200000.pt", dataset=tmp_path)
    with pytest.raises(ValueError, match="must be a .safetensors file: a .pt file is a pickle"):
        f5.check_inputs(settings)


def test_the_pretrained_weights_are_copied_once_not_linked(tmp_path: Path) -> None:
    source = tmp_path / "shared" / "model_1250000.safetensors"
    source.parent.mkdir()
    source.write_bytes(os.urandom(4096))
    link = tmp_path / "shared" / "latest.safetensors"
    link.symlink_to(source)
    folder = tmp_path / "trial" / "ckpt"
    copy = f5.copy_pretrained(link, folder)
    assert copy == folder / "pretrained_latest.safetensors"
    assert copy.is_file() and not copy.is_symlink() and copy.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == [copy.name]  # no temporary file left
    inode = copy.stat().st_ino
    assert f5.copy_pretrained(link, folder).stat().st_ino == inode  # a later attempt reuses the whole copy
    copy.write_bytes(b"truncated by a kill")  # not possible through copy_pretrained, but never trusted
    assert f5.copy_pretrained(link, folder).read_bytes() == source.read_bytes()


def test_the_held_out_slice_is_fixed_disjoint_and_usable() -> None:
    durations = [0.1, 35.0] + [1.0 + i / 10 for i in range(40)]
    train, val = f5.split_indices(durations, 8, seed=0)
    assert (train, val) == f5.split_indices(durations, 8, seed=0)
    assert len(val) == 8 and not set(train) & set(val) and sorted(train + val) == list(range(42))
    assert 0 in train and 1 in train  # unusable lengths are never held out
    with pytest.raises(ValueError, match="40 utterances of 0.3-30.0 s; at least 100 are needed"):
        f5.split_indices(durations, 50, seed=0)


def test_importing_the_objective_needs_neither_torch_nor_f5_tts() -> None:
    code = "import sys, objectives.f5_tts; print(sorted(m for m in ('torch', 'f5_tts') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_fixed_architecture_is_f5tts_v1_base() -> None:
    # src/f5_tts/configs/F5TTS_v1_Base.yaml at 655fbca5529b68e36d7b8f2d6d131f68132156fe
    assert {k: f5.ARCH[k] for k in ("dim", "depth", "heads", "ff_mult", "text_dim", "conv_layers")} == {
        "dim": 1024, "depth": 22, "heads": 16, "ff_mult": 2, "text_dim": 512, "conv_layers": 4,
    }
    assert f5.MEL["n_mel_channels"] == 100 and f5.MEL["mel_spec_type"] == "vocos"


# ---------------------------------------------------------------- a tiny F5 run (where F5-TTS is installed)

TINY_ARCH = {**f5.ARCH, "dim": 64, "depth": 2, "heads": 2, "ff_mult": 2, "text_dim": 32, "conv_layers": 1}


def _tiny_inputs(root: Path) -> tuple[Path, Path]:
    """A 24-utterance dataset as F5-TTS's prepare_csv_wavs.py writes it, and 'pretrained' tiny weights.

    One utterance has a character the vocabulary lacks; the weights' EMA has counted 1.25M updates, as
    F5-TTS's published ones have.
    """
    import soundfile
    import torch
    from datasets.arrow_writer import ArrowWriter
    from ema_pytorch import EMA
    from f5_tts.model import CFM, DiT
    from safetensors.torch import save_file

    data = root / "data"
    (data / "wavs").mkdir(parents=True)
    letters = list("abcdefghij")
    (data / "vocab.txt").write_text("\n".join([" ", *letters]) + "\n")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        seconds = 0.4 + 0.05 * i
        path = data / "wavs" / f"{i}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(int(24000 * seconds))).astype("float32"), 24000)
        text = "".join(rng.choice(letters, size=6)) + ("ß" if i == 0 else "")
        rows.append({"audio_path": str(path), "text": text, "duration": seconds})
    with ArrowWriter(path=str(data / "raw.arrow")) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    (data / "duration.json").write_text(json.dumps({"duration": [r["duration"] for r in rows]}))
    torch.manual_seed(1)
    model = CFM(transformer=DiT(**TINY_ARCH, text_num_embeds=len(letters) + 1, mel_dim=100), mel_spec_kwargs=f5.MEL)
    pretrained = root / "pretrained" / "model_tiny.safetensors"
    pretrained.parent.mkdir()
    weights = {k: v.contiguous() for k, v in EMA(model, include_online_model=False).state_dict().items()}
    weights["step"] = torch.tensor(1_250_000)
    save_file(weights, str(pretrained))
    return pretrained, data


@pytest.mark.skipif(
    importlib.util.find_spec("f5_tts") is None,
    reason="F5-TTS is not installed here (it needs torchaudio for the CUDA torch of the trial image and GBs of "
    "dependencies); the trial image (docker/) has it, where this test runs a tiny F5 configuration",
)
def test_a_tiny_f5_configuration_trains_reports_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from f5_tts.infer.utils_infer import load_checkpoint
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    monkeypatch.setattr(f5, "VAL_SAMPLES", 4)
    monkeypatch.setattr(f5, "VAL_BATCH_FRAMES", 300)
    pretrained, data = _tiny_inputs(tmp_path)
    params = {**F5_PARAMS, "batch_size_per_gpu": 400, "num_warmup_updates": 2}
    space = {
        **F5_SPACE,
        "batch_size_per_gpu": {"type": "categorical", "choices": [400]},
        "num_warmup_updates": {"type": "int", "low": 0, "high": 10},
    }
    attrs: dict[str, Any] = {}

    def run(volume: Path, stop_after: int | None = None) -> tuple[dict[int, float], Any, AgentTrial]:
        trial, events = make_trial(volume, params, space, max_step=6, eval_interval=2)
        settings = f5.F5Settings(1e-4, 400, 2, pretrained=pretrained, dataset=data)
        f5.check_inputs(settings)
        if stop_after is not None:
            save = trial.save_checkpoint

            def save_then_stop(state: dict[str, Any], step: int) -> None:
                save(state, step)
                if step >= stop_after:
                    raise KeyboardInterrupt  # a preemption right after a checkpoint

            trial.save_checkpoint = save_then_stop  # type: ignore[method-assign]
        try:
            value = f5.train(trial, settings, arch=TINY_ARCH, num_workers=0)
        except KeyboardInterrupt:
            value = None
        attrs.clear()
        attrs.update({e.key: e.value for e in events if e.type == "user_attr"})
        return {e.step: e.value for e in events if isinstance(e, ReportEvent)}, value, trial

    straight, value, trial = run(tmp_path / "a")
    assert sorted(straight) == [2, 4, 6] and all(np.isfinite(v) for v in straight.values())
    assert value == min(straight.values())
    folder = trial.checkpoint_dir
    assert folder is not None
    copy = folder / "pretrained_model_tiny.safetensors"
    assert copy.is_file() and not copy.is_symlink() and copy.read_bytes() == pretrained.read_bytes()
    assert attrs["f5_unknown_tokens"] == {"total": 1, "utterances": 1, "examples": {"ß": 1}}
    # The best evaluation's EMA weights, F5-TTS's format: the EMA restarted (its count is this run's
    # updates, not 1.25M + them), and F5-TTS's inference loads them as is.
    assert straight[attrs["best_step"]] == value
    best_file = folder / attrs["best_weights"]
    assert best_file.name == f"best-{attrs['best_step']:09d}.safetensors"
    best = load_file(str(best_file))
    assert int(best["step"]) == attrs["best_step"]
    vocab_char_map, vocab_size = get_tokenizer(str(data / "vocab.txt"), "custom")
    deployed = CFM(
        transformer=DiT(**TINY_ARCH, text_num_embeds=vocab_size, mel_dim=100), mel_spec_kwargs=f5.MEL,
        vocab_char_map=vocab_char_map,
    )
    load_checkpoint(deployed, str(best_file), "cpu", dtype=torch.float32, use_ema=True)
    assert all(torch.equal(v, best[f"ema_model.{k}"]) for k, v in deployed.state_dict().items())

    first, _, _ = run(tmp_path / "b", stop_after=2)
    rest, resumed_value, resumed = run(tmp_path / "b")
    assert resumed.resume_step == 6 and sorted(first) == [2] and sorted(rest) == [4, 6]
    assert {**first, **rest} == straight and resumed_value == value


# ---------------------------------------------------------------- the study on the fake RunPod

API_KEY = "rpa_f5_test_key"
VOLUME_ID = "f5vol00001"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeRunPod]:
    storage = tmp_path / "project" / "storage"
    storage.mkdir(parents=True)
    sleeper = "import time\nwhile True:\n    time.sleep(1)\n"  # F5 cannot run here: the pods just stay up
    server = FakeRunPod(
        volumes={VOLUME_ID: storage}, volume_data_center="EU-RO-1", api_keys={API_KEY}, time_scale=20.0,
        provision_seconds=2.0, start_seconds=1.0, workdir=tmp_path / "fake", pod_command=[sys.executable, "-c", sleeper],
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _live(fake: FakeRunPod) -> list[Any]:
    return [p for p in fake.pods(include_terminated=True) if p.status not in ("TERMINATED", "EXITED")]


@pytest.mark.slow
def test_hpo_run_f5_lr_launches_the_studys_pods(fake: FakeRunPod, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(REPO / "objectives", project / "objectives", ignore=shutil.ignore_patterns("__pycache__"))
    study = yaml.safe_load((REPO / "studies.yaml").read_text())["studies"]["f5-lr"]
    study["volume"] = {"id": VOLUME_ID, "data_center": "EU-RO-1", "local_path": "storage"}
    study["poll_interval"] = 0.5  # the copy polls faster; everything else is the study as shipped
    study["compute"]["image"] = "ghcr.io/me/runpod-hpo-trial:0.1.0"  # the user's own, as the README tells them
    studies = project / "studies.yaml"
    studies.write_text(yaml.safe_dump({"studies": {"f5-lr": study}}))
    config = load_study(studies, "f5-lr")
    env = {
        **os.environ, "RUNPOD_API_KEY": API_KEY, "HPO_RUNPOD_REST_URL": fake.url, "RUNPOD_API_BASE_URL": fake.url,
        "HPO_CACHE_DIR": str(tmp_path / "cache"),
    }
    controller = subprocess.Popen(
        [sys.executable, "-m", "hpo", "run", "--study", "f5-lr", "--studies", str(studies), "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while len(fake.pods(include_terminated=True)) < config.budget.concurrency:
            assert controller.poll() is None, controller.communicate()[1].decode()
            assert time.monotonic() < deadline, "timed out waiting for the study's pods"
            time.sleep(0.1)
        time.sleep(1.0)  # a controller that would launch more than its concurrency has had time to
        pods = fake.pods(include_terminated=True)
        assert len(pods) == config.budget.concurrency == 4
        assert sorted(p.name for p in pods) == [f"hpo-f5-lr-w{n}" for n in range(4)]  # warm workers
        for pod in pods:
            assert pod.request.image == "ghcr.io/me/runpod-hpo-trial:0.1.0"
            assert pod.gpu_type == "NVIDIA RTX A5000"  # the first preference, while it has capacity
            assert pod.spot and pod.cloud == "SECURE" and pod.data_center_id == "EU-RO-1"
            assert pod.volume_id == VOLUME_ID and pod.mount_path == "/workspace"
            assert pod.request.disk == 30
            assert set(pod.env) == {"HPO_STUDY", "HPO_WORKER", "HPO_VOLUME", "HPO_WORKER_POLL", "HPO_WORKER_IDLE_LIMIT"}
            assert pod.env["HPO_STUDY"] == "f5-lr" and pod.env["HPO_VOLUME"] == "/workspace"
        spec = TrialSpec.read(DirectoryVolume(project / "storage"), StudyLayout("f5-lr").spec(0))
        assert spec.objective == "f5_tts" and spec.step_unit == "update" and spec.max_step == 10000
        assert spec.checkpoint_seconds == 900.0  # checkpoints by time reach the pods
        assert set(spec.params) == set(config.search_space)
    finally:
        os.killpg(controller.pid, signal.SIGKILL)  # no stop command: the next `hpo run` would adopt the pods
        controller.wait(timeout=30)
        for pod in _live(fake):
            fake.terminate(pod.id)
    deadline = time.monotonic() + 30
    while _live(fake):
        assert time.monotonic() < deadline, "pods still live"
        time.sleep(0.1)
