"""Text tokens a vocabulary lacks: F5-TTS trains on them silently as id 0, so count and name them.

F5-TTS maps each token of an utterance's text (a character, or a pinyin
syllable for Chinese) through ``vocab.txt`` with ``vocab_char_map.get(c, 0)``:
a token the vocabulary lacks becomes id 0, the space, with no warning. A
fine-tuning dataset in a language or script the pretrained vocabulary does
not cover then trains on garbled text. :func:`unknown_tokens` counts them so
the objective can warn, naming how many and which, and record it on the trial.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXAMPLES = 10
"""How many of the most frequent unknown tokens a report names."""


def read_vocab(path: Path) -> dict[str, int]:
    """``vocab.txt`` as F5-TTS's ``get_tokenizer(path, "custom")`` reads it: line ``i`` minus its last character is token ``i``."""
    with open(path, encoding="utf-8") as f:
        return {line[:-1]: index for index, line in enumerate(f)}


@dataclass(frozen=True)
class UnknownTokens:
    """Tokens of a dataset's texts that a vocabulary lacks."""

    total: int
    """Unknown token occurrences, all utterances together."""
    utterances: int
    """Utterances with at least one."""
    tokens: Counter[str] = field(default_factory=Counter)
    """Each unknown token and how often it occurs."""

    def examples(self, count: int = EXAMPLES) -> dict[str, int]:
        """The ``count`` most frequent unknown tokens, with their counts."""
        return dict(self.tokens.most_common(count))

    def message(self, where: str) -> str:
        """One line for the attempt's log: how many, where, and the commonest ones."""
        shown = ", ".join(f"{token!r} x{n}" for token, n in self.examples().items())
        return (
            f"{where}: {self.total} text token(s) in {self.utterances} utterance(s) are not in vocab.txt "
            f"and train as id 0 (the space): {shown}; use the pretrained model's vocabulary only with "
            "text it covers (or extend the vocabulary and the model's text embedding)"
        )

    def as_attr(self) -> dict[str, Any]:
        """A JSON value for ``trial.set_user_attr``."""
        return {"total": self.total, "utterances": self.utterances, "examples": self.examples()}


def unknown_tokens(texts: Iterable[str | Sequence[str]], vocab: Mapping[str, int]) -> UnknownTokens:
    """Count the tokens of ``texts`` (each a string of characters or a list of tokens) that ``vocab`` lacks."""
    counts: Counter[str] = Counter()
    utterances = 0
    for text in texts:
        missing = [token for token in text if token not in vocab]
        if missing:
            utterances += 1
            counts.update(missing)
    return UnknownTokens(total=sum(counts.values()), utterances=utterances, tokens=counts)
