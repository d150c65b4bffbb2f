"""Fine-tune F5-TTS (``F5TTS_v1_Base``) from its pretrained weights on the network volume.

What the volume must hold (README, "Tuning F5-TTS on RunPod", uploads them):

``/workspace/f5/pretrained/model_1250000.safetensors``
    The pretrained ``F5TTS_v1_Base`` weights as F5-TTS publishes them (its EMA
    state dict). Safetensors only: a ``.pt`` file is a pickle, and nothing
    read from the volume is unpickled.
``/workspace/f5/data/dataset/``
    The output of F5-TTS's own ``src/f5_tts/train/datasets/prepare_csv_wavs.py``
    (``raw.arrow``, ``duration.json``, and ``vocab.txt``, which for fine-tuning
    is the pretrained model's vocabulary). ``raw.arrow`` names each wav by the
    absolute path it had when it was prepared, so prepare it where the wavs
    lie under ``/workspace`` exactly as the pod sees them (on a pod, say).

A study may point elsewhere with single-choice categorical parameters
``pretrained`` and ``dataset`` (``{type: categorical, choices: [/workspace/...]}``).

Parameters (F5-TTS's own names): ``learning_rate``, ``batch_size_per_gpu``
(audio frames per batch; F5-TTS's ``batch_size_type: frame``) and
``num_warmup_updates`` are required; ``max_grad_norm`` (:data:`MAX_GRAD_NORM`),
``weight_decay`` (:data:`WEIGHT_DECAY`, AdamW's default, which F5-TTS uses)
and ``max_samples`` (64) keep those defaults unless the study searches them.

The batch must fit the GPU the attempt got: :func:`objective` refuses at
once, naming the GPU, its memory, the batch and the limit, a batch above
F5-TTS's own sizing rule for that GPU (:func:`max_batch_frames`), rather than
run out of memory an hour in (a resumed attempt may land on a smaller GPU
of the study's list, and is checked again).

Kept fixed, because the pretrained weights only load into this shape: the
architecture (:data:`ARCH`) and mel settings (:data:`MEL`), taken from
``src/f5_tts/configs/F5TTS_v1_Base.yaml`` and ``src/f5_tts/train/finetune_cli.py``
at commit 655fbca5529b68e36d7b8f2d6d131f68132156fe, the one the trial image pins.

A step is one optimizer update. The LR warms up linearly over
``num_warmup_updates`` and decays linearly to ``fidelity.max_step`` (F5-TTS's
schedule). What is evaluated is what F5-TTS deploys: its EMA weights (its
inference loads ``use_ema=True`` by default). The pretrained EMA has counted
1.25M updates and would stay ~90% pretrained through 10k updates of
fine-tuning, so it is restarted when fine-tuning starts (``_ema.restart_ema``:
it follows the online weights for 100 updates, then warms up). Every
``fidelity.eval_interval`` updates the EMA's validation loss (the conditional
flow-matching loss, CFG drop-outs off, on a held-out slice of
:data:`VAL_SAMPLES` utterances batched at a fixed :data:`VAL_BATCH_FRAMES`
whatever the trial's batch size, averaged over the fixed seeds of
``_torch_training.EVAL_SEEDS``: one draw of flow time and noise per utterance
is noisy) is reported. The EMA weights of the best evaluation are kept and
written, at checkpoints, as ``best-<step>.safetensors`` in the trial's
checkpoint folder: the format of F5-TTS's published weights, which its
inference loads as is (``--ckpt_file``, with the dataset's ``vocab.txt``).
The run is checkpointed (model, optimizer, scheduler, EMA, step, RNG states;
about 5.4 GB in fp32 for this model: see ``_torch_checkpoint``) at the first
evaluation ``fidelity.checkpoint_seconds`` after the last checkpoint, and
after the last update. All of it goes through ``_torch_training.run_updates``,
the loop ``tiny_torch`` tests on the CPU. The data order is a function of the
update number, so a resumed attempt feeds the same batches as an
uninterrupted run and restores every RNG state; on a GPU, bit-for-bit equal
losses would also need deterministic kernels, which are not switched on
because they cost speed.

Text tokens the vocabulary lacks train silently as id 0 in F5-TTS; the
objective counts them, prints a warning naming the count and the commonest
ones, and records them as the user attribute ``f5_unknown_tokens``.

torch and F5-TTS are imported inside :func:`train`: importing this module
needs neither, so its settings and checks run anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from objectives._best_weights import BestWeights, Weights
from objectives._ema import restart_ema
from objectives._gpu import GpuInfo, current_gpu
from objectives._torch_training import (
    EpochOrder,
    TrainingParts,
    optional_param,
    run_updates,
    seed_all,
    warmup_linear_decay,
)
from objectives._vocab import unknown_tokens

PRETRAINED = "/workspace/f5/pretrained/model_1250000.safetensors"
DATASET = "/workspace/f5/data/dataset"
VOLUME_MOUNT = "/workspace"

ARCH: dict[str, Any] = {
    "dim": 1024,
    "depth": 22,
    "heads": 16,
    "ff_mult": 2,
    "text_dim": 512,
    "text_mask_padding": True,
    "qk_norm": None,
    "conv_layers": 4,
    "pe_attn_head": None,
    "attn_backend": "torch",
    "attn_mask_enabled": False,
    "checkpoint_activations": False,
}
"""``F5TTS_v1_Base``'s ``model.arch`` (the DiT backbone)."""

MEL: dict[str, Any] = {
    "target_sample_rate": 24000,
    "n_mel_channels": 100,
    "hop_length": 256,
    "win_length": 1024,
    "n_fft": 1024,
    "mel_spec_type": "vocos",
}
"""``F5TTS_v1_Base``'s ``model.mel_spec``."""

DATA_SEED = 666  # F5-TTS's `resumable_with_seed`: every trial sees its batches in the same order
SPLIT_SEED = 0  # which utterances are held out: the same for every trial
MODEL_SEED = 0
VAL_SAMPLES = 64
VAL_BATCH_FRAMES = 9600
VAL_MAX_SAMPLES = 32
MIN_SECONDS, MAX_SECONDS = 0.3, 30.0  # F5-TTS's CustomDataset skips utterances outside this range
NUM_WORKERS = 4
MAX_GRAD_NORM = 1.0  # F5-TTS's default; not searched: the LR and warm-up matter more for 24 trials
WEIGHT_DECAY = 0.01  # AdamW's default, which F5-TTS keeps; not searched, for the same reason
PRECISION = "bf16"  # autocast dtype on a GPU that supports it ("fp32": none); weights and optimizer stay fp32
# Keys of old F5-TTS checkpoints that today's model no longer has (F5-TTS drops them too, commit 305e3ea).
_STALE_KEYS = ("ema_model.mel_spec.mel_stft.mel_scale.fb", "ema_model.mel_spec.mel_stft.spectrogram.window")


@dataclass(frozen=True)
class F5Settings:
    """One trial's settings: its sampled parameters and where its inputs are."""

    learning_rate: float
    batch_size_per_gpu: int
    num_warmup_updates: int
    max_grad_norm: float = MAX_GRAD_NORM
    weight_decay: float = WEIGHT_DECAY
    max_samples: int = 64
    pretrained: Path = Path(PRETRAINED)
    dataset: Path = Path(DATASET)

    @property
    def vocab(self) -> Path:
        return self.dataset / "vocab.txt"


def settings_from_trial(trial: Any) -> F5Settings:
    """Read the trial's parameters, refusing values F5-TTS cannot train with (the message names the parameter)."""
    settings = F5Settings(
        learning_rate=float(trial.suggest_float("learning_rate")),
        batch_size_per_gpu=int(trial.suggest_categorical("batch_size_per_gpu")),
        num_warmup_updates=int(trial.suggest_int("num_warmup_updates")),
        max_grad_norm=float(optional_param(trial, "max_grad_norm", MAX_GRAD_NORM)),
        weight_decay=float(optional_param(trial, "weight_decay", WEIGHT_DECAY)),
        max_samples=int(optional_param(trial, "max_samples", 64)),
        pretrained=Path(optional_param(trial, "pretrained", PRETRAINED)),
        dataset=Path(optional_param(trial, "dataset", DATASET)),
    )
    problems = []
    if not settings.learning_rate > 0:
        problems.append(f"learning_rate must be > 0 (got {settings.learning_rate})")
    if settings.batch_size_per_gpu < 1:
        problems.append(f"batch_size_per_gpu is in audio frames and must be >= 1 (got {settings.batch_size_per_gpu})")
    if settings.num_warmup_updates < 0:
        problems.append(f"num_warmup_updates must be >= 0 (got {settings.num_warmup_updates})")
    if settings.max_grad_norm < 0:
        problems.append(f"max_grad_norm must be >= 0, 0 for no clipping (got {settings.max_grad_norm})")
    if settings.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0 (got {settings.weight_decay})")
    if settings.max_samples < 1:
        problems.append(f"max_samples must be >= 1 (got {settings.max_samples})")
    if problems:
        raise ValueError("f5_tts: " + "; ".join(problems))
    return settings


def max_batch_frames(gpu: GpuInfo) -> int:
    """The largest batch (audio frames) F5-TTS's own rule gives ``gpu``: 38400 * (GiB - 5) / 75.

    The rule of F5-TTS's ``finetune_gradio.py``, for this model: about 9,700
    frames on a 24 GB RTX A5000, 7,700 on a 20 GB RTX 4000 Ada, 5,600 on a
    16 GB RTX A4000 (a little less where ECC takes its share of the memory).
    """
    return int(38400 * (gpu.gib - 5) / 75)  # as calculate_train computes it, rounding included


def check_batch_fits(batch_frames: int, gpu: GpuInfo | None) -> None:
    """Refuse a batch larger than :func:`max_batch_frames` allows on ``gpu`` (None: no GPU, nothing to check).

    Raises:
        ValueError: Naming the GPU, its memory, the batch and the limit.
    """
    if gpu is None:
        return
    limit = max_batch_frames(gpu)
    if batch_frames > limit:
        raise ValueError(
            f"f5_tts: batch_size_per_gpu={batch_frames} audio frames does not fit this attempt's GPU, "
            f"{gpu.describe()}: F5-TTS's sizing rule (38400 * (GiB - 5) / 75) allows at most {limit} frames "
            "on it; choose batch sizes that fit every GPU type in the study's compute.gpu_types "
            "(a resumed attempt may land on any of them)"
        )


def volume_key(path: Path) -> str:
    """Where ``path`` is in the network volume's S3 API (``s3://<volume id>/<key>``), for messages."""
    volume = os.environ.get("RUNPOD_VOLUME_ID", "<volume id>")  # RunPod sets it in a pod with a network volume
    try:
        key = PurePosixPath(path).relative_to(VOLUME_MOUNT)
    except ValueError:
        return str(path)
    return f"s3://{volume}/{key}"


def check_inputs(settings: F5Settings) -> None:
    """Fail early, naming every missing input and where to upload it, before any GPU time is spent.

    Raises:
        FileNotFoundError: Files are missing (all of them are named).
        ValueError: The pretrained weights are not a safetensors file.
    """
    missing: list[str] = []
    if not settings.pretrained.is_file():
        missing.append(f"the pretrained weights {settings.pretrained} (upload to {volume_key(settings.pretrained)})")
    elif settings.pretrained.suffix != ".safetensors":
        raise ValueError(
            f"f5_tts: the pretrained weights {settings.pretrained} must be a .safetensors file: a .pt file is a "
            "pickle, which is never loaded from the volume (F5-TTS publishes model_1250000.safetensors)"
        )
    if not settings.dataset.is_dir():
        missing.append(f"the dataset folder {settings.dataset} (upload F5-TTS's prepared dataset to {volume_key(settings.dataset)})")
    else:
        if not (settings.dataset / "raw.arrow").is_file() and not (settings.dataset / "raw").is_dir():
            missing.append(f"{settings.dataset / 'raw.arrow'} (written by F5-TTS's prepare_csv_wavs.py)")
        if not (settings.dataset / "duration.json").is_file():
            missing.append(f"{settings.dataset / 'duration.json'} (written by F5-TTS's prepare_csv_wavs.py)")
        if not settings.vocab.is_file():
            missing.append(f"{settings.vocab} (the pretrained model's vocabulary; prepare_csv_wavs.py copies it)")
    if missing:
        raise FileNotFoundError("f5_tts: missing on the volume: " + "; ".join(missing))


def copy_pretrained(source: Path, folder: Path) -> Path:
    """Copy the pretrained weights into the trial's checkpoint folder (once) and return the copy.

    A copy, not a symlink: the trial starts from the bytes it copied even if
    the shared file is replaced while the study runs. Written to a temporary
    file, fsynced and renamed, so a kill mid-copy leaves no truncated weights;
    a complete copy (same size) is reused by a later attempt.
    """
    target = folder / f"pretrained_{source.name}"
    if target.is_file() and not target.is_symlink() and target.stat().st_size == source.stat().st_size:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 * 1024 * 1024)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def split_indices(durations: Sequence[float], val_samples: int, seed: int) -> tuple[list[int], list[int]]:
    """Training and held-out utterance indices: ``val_samples`` usable utterances drawn at ``seed``, the rest train.

    Only utterances F5-TTS trains on (0.3 s to 30 s) are held out, so each
    held-out utterance is evaluated as itself.
    """
    usable = [i for i, seconds in enumerate(durations) if MIN_SECONDS <= seconds <= MAX_SECONDS]
    if len(usable) < 2 * val_samples:
        raise ValueError(
            f"f5_tts: the dataset has {len(usable)} utterances of {MIN_SECONDS}-{MAX_SECONDS} s; "
            f"at least {2 * val_samples} are needed to hold {val_samples} out for validation"
        )
    held_out = set(np.random.default_rng(seed).choice(usable, size=val_samples, replace=False).tolist())
    return [i for i in range(len(durations)) if i not in held_out], sorted(held_out)


class _Slice:
    """Some utterances of an F5-TTS dataset, with the ``get_frame_len`` its batch sampler needs."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def get_frame_len(self, index: int) -> float:
        return self.dataset.get_frame_len(self.indices[index])


class _UpdateBatches:
    """The batch of each update ``first`` .. ``last``, as a DataLoader ``batch_sampler``."""

    def __init__(self, order: EpochOrder, batches: Sequence[list[int]], first: int, last: int) -> None:
        self.order, self.batches, self.first, self.last = order, batches, first, last

    def __len__(self) -> int:
        return max(0, self.last - self.first + 1)

    def __iter__(self) -> Iterator[list[int]]:
        for items in self.order.updates(self.first, self.last):
            yield self.batches[items[0]]


def _ignore_sigterm(_worker: int) -> None:
    # A preemption is the agent's to handle (it raises in the main thread); a
    # DataLoader worker that died of the SIGTERM sent to the process group
    # would turn it into a worker error. Workers end with the agent.
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def objective(trial: Any, *, gpu: Callable[[], GpuInfo | None] = current_gpu) -> float:
    """Fine-tune F5TTS_v1_Base for ``trial.max_step`` updates; report the EMA's validation loss; return the best.

    ``gpu`` says which GPU the attempt got (tests inject one); the batch is
    checked against it before anything is loaded.
    """
    settings = settings_from_trial(trial)
    device = gpu()
    check_batch_fits(settings.batch_size_per_gpu, device)
    check_inputs(settings)
    if device is not None:
        trial.set_user_attr(
            "f5_gpu",
            {"name": device.name, "gib": round(device.gib, 2), "max_batch_frames": max_batch_frames(device)},
        )
    return train(trial, settings)


def iter_texts(raw: Any, chunk: int = 1024) -> Iterable[Any]:
    """Each utterance's text (a list of tokens, as prepare_csv_wavs.py stores it) of an F5-TTS ``raw`` dataset."""
    for start in range(0, len(raw), chunk):
        yield from raw[start : start + chunk]["text"]


def report_unknown_tokens(trial: Any, texts: Iterable[Any], vocab: dict[str, int], where: Path) -> int:
    """Warn about text tokens ``vocab`` lacks (F5-TTS trains them as id 0) and record them; return their count."""
    unknown = unknown_tokens(texts, vocab)
    trial.set_user_attr("f5_unknown_tokens", unknown.as_attr())
    if unknown.total:
        print(f"WARNING {unknown.message(f'f5_tts: {where}')}", flush=True)
    return unknown.total


def save_safetensors(path: Path, weights: Weights) -> None:
    """Write a state dict as safetensors, F5-TTS's format for published weights."""
    from safetensors.torch import save_file

    save_file(dict(weights), str(path))


def load_dataset(folder: Path) -> tuple[Any, list[float]]:
    """F5-TTS's ``CustomDataset`` over a prepared dataset folder, and each utterance's duration in seconds.

    F5-TTS's own ``load_dataset(..., dataset_type="CustomDatasetPath")`` is not
    used: at the pinned commit it reads a variable it never sets.
    """
    from datasets import Dataset as ArrowDataset
    from datasets import load_from_disk
    from f5_tts.model.dataset import CustomDataset

    raw = load_from_disk(str(folder / "raw")) if (folder / "raw").is_dir() else ArrowDataset.from_file(str(folder / "raw.arrow"))
    durations = [float(d) for d in json.loads((folder / "duration.json").read_text())["duration"]]
    if len(durations) != len(raw):
        raise ValueError(f"f5_tts: {folder}: duration.json has {len(durations)} entries, raw.arrow {len(raw)} rows")
    first = raw[0]["audio_path"] if len(raw) else None
    if first is not None and not Path(first).is_file():
        raise FileNotFoundError(
            f"f5_tts: {folder}/raw.arrow names audio files that are not here (first: {first}); "
            "F5-TTS's prepare_csv_wavs.py records absolute paths: prepare the dataset where the wavs lie "
            f"under {VOLUME_MOUNT} as the pod sees them"
        )
    return CustomDataset(raw, durations=durations, preprocessed_mel=False, **MEL), durations


def load_pretrained(path: Path, model: Any, ema: Any) -> None:
    """Load F5-TTS's published EMA weights into the EMA and the online model, as F5-TTS's Trainer does."""
    from safetensors.torch import load_file

    weights = load_file(str(path), device="cpu")
    for key in _STALE_KEYS:
        weights.pop(key, None)
    online = {k.replace("ema_model.", ""): v for k, v in weights.items() if k not in ("initted", "update", "step")}
    try:
        missing, unexpected = ema.load_state_dict(weights, strict=False)
        model.load_state_dict(online)
    except RuntimeError as exc:
        raise RuntimeError(
            f"f5_tts: {path} does not fit F5TTS_v1_Base with this vocab.txt (the vocabulary must be the "
            f"pretrained model's): {exc}"
        ) from None
    wrong = [k for k in missing if k not in ("initted", "step")] + list(unexpected)
    if wrong:
        raise RuntimeError(f"f5_tts: {path} does not fit F5TTS_v1_Base's EMA: {', '.join(wrong[:5])}")


def train(trial: Any, settings: F5Settings, *, arch: dict[str, Any] | None = None, num_workers: int = NUM_WORKERS) -> float:
    """Fine-tune from ``settings.pretrained``; ``arch`` replaces :data:`ARCH` only in tests of tiny models."""
    from contextlib import nullcontext

    import torch
    from ema_pytorch import EMA
    from f5_tts.model import CFM, DiT
    from f5_tts.model.dataset import DynamicBatchSampler, collate_fn
    from f5_tts.model.utils import get_tokenizer
    from torch.utils.data import DataLoader, SequentialSampler

    folder = trial.checkpoint_dir
    if folder is None:
        raise RuntimeError("f5_tts: the trial's checkpoint folder is not a local path; run it where the volume is mounted (a pod)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = PRECISION == "bf16" and device.type == "cuda" and torch.cuda.is_bf16_supported()

    def autocast() -> Any:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if bf16 else nullcontext()

    dataset, durations = load_dataset(settings.dataset)
    train_ids, val_ids = split_indices(durations, VAL_SAMPLES, SPLIT_SEED)
    train_set: Any = _Slice(dataset, train_ids)  # a torch Dataset in all but name
    val_set = _Slice(dataset, val_ids)
    train_batches = DynamicBatchSampler(
        SequentialSampler(train_set), settings.batch_size_per_gpu, max_samples=settings.max_samples, drop_residual=False
    ).batches
    val_batches = DynamicBatchSampler(
        SequentialSampler(val_set), VAL_BATCH_FRAMES, max_samples=VAL_MAX_SAMPLES, drop_residual=False
    ).batches
    order = EpochOrder(len(train_batches), 1, seed=DATA_SEED)

    seed_all(MODEL_SEED)  # a fresh run is repeatable; a resumed one restores the RNG states from its checkpoint
    vocab_char_map, vocab_size = get_tokenizer(str(settings.vocab), "custom")
    report_unknown_tokens(trial, iter_texts(dataset.data), vocab_char_map, settings.dataset)
    model = CFM(
        transformer=DiT(**(ARCH if arch is None else arch), text_num_embeds=vocab_size, mel_dim=MEL["n_mel_channels"]),
        mel_spec_kwargs=MEL,
        vocab_char_map=vocab_char_map,
    ).to(device)
    ema = EMA(model, include_online_model=False).to(device)  # F5-TTS's Trainer's EMA settings
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    warmup, total = settings.num_warmup_updates, trial.max_step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: warmup_linear_decay(u, warmup, total))

    def start_fresh() -> None:
        load_pretrained(copy_pretrained(settings.pretrained, folder), model, ema)
        restart_ema(ema)  # the EMA of this fine-tuning run, not the 1.25M-update one

    batches: Iterator[dict[str, Any]] | None = None

    def update(step: int) -> float:
        nonlocal batches
        if batches is None:  # the first update of this attempt: batches from here on
            batches = iter(
                DataLoader(
                    train_set,
                    batch_sampler=_UpdateBatches(order, train_batches, step, trial.max_step),
                    collate_fn=collate_fn,
                    num_workers=num_workers,
                    pin_memory=device.type == "cuda",
                    worker_init_fn=_ignore_sigterm,
                    # Its own generator: worker seeds never draw from the global RNG the checkpoint restores.
                    generator=torch.Generator().manual_seed(DATA_SEED),
                )
            )
        batch = next(batches)
        model.train()
        mel = batch["mel"].permute(0, 2, 1).to(device, non_blocking=True)
        with autocast():
            loss, _, _ = model(mel, text=batch["text"], lens=batch["mel_lengths"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        ema.update()
        return loss.item()

    val_cache: list[dict[str, Any]] = []

    def evaluate() -> float:
        if not val_cache:
            val_cache.extend(collate_fn([val_set[i] for i in batch]) for batch in val_batches)
        deployed = ema.ema_model  # what F5-TTS's inference loads (use_ema=True)
        drops = deployed.audio_drop_prob, deployed.cond_drop_prob
        deployed.audio_drop_prob = deployed.cond_drop_prob = 0.0  # the conditional loss: no CFG drop-outs
        deployed.eval()
        total_loss, total_frames = 0.0, 0
        try:
            with torch.no_grad(), autocast():
                for batch in val_cache:
                    mel = batch["mel"].permute(0, 2, 1).to(device)
                    loss, _, _ = deployed(mel, text=batch["text"], lens=batch["mel_lengths"].to(device))
                    frames = int(batch["mel_lengths"].sum())
                    total_loss += loss.item() * frames
                    total_frames += frames
        finally:
            deployed.audio_drop_prob, deployed.cond_drop_prob = drops
        return total_loss / max(total_frames, 1)

    parts = TrainingParts(model, optimizer, scheduler, ema)
    # The whole EMA state dict ("ema_model.*", "step", "initted"): the layout of model_1250000.safetensors.
    best = BestWeights(lambda: ema.state_dict(), suffix=".safetensors", write=save_safetensors)
    trial.set_user_attr("f5_train_batches_per_epoch", len(train_batches))
    return run_updates(trial, parts, update=update, evaluate=evaluate, start_fresh=start_fresh, best=best)
