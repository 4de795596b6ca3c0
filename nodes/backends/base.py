"""The backend interface: load a local model once, then stream generated tokens with timings.

A `Generation` is an iterator of `Token`s. Its `timings` count only the backend's own compute
(time spent inside the generator), so a consumer that paces or sends between tokens does not
inflate the native prefill and decode figures.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Sequence


class InvalidParameter(ValueError):
    """A generation parameter out of range; names the field and the value."""

    def __init__(self, field_name: str, value: object, accepted: str) -> None:
        super().__init__(f"{field_name} must be {accepted} (got {value!r})")
        self.field = field_name
        self.value = value


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0            # 0: no top-k filter
    seed: int = 0
    # Block end-of-sequence so exactly max_new_tokens come out: a testbed service asks for
    # a size and random-weight models would otherwise often stop at once.
    ignore_eos: bool = True

    def validate(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens <= 0:
            raise InvalidParameter("max_new_tokens", self.max_new_tokens, "an integer > 0")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise InvalidParameter("temperature", self.temperature, "a finite number >= 0")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidParameter("top_k", self.top_k, "an integer >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidParameter("seed", self.seed, "an integer >= 0")


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str  # may be "" while a multi-byte character is still incomplete


@dataclass(slots=True)
class Timings:
    tokens_in: int = 0
    tokens_out: int = 0
    prefill_s: float = 0.0  # prompt evaluation plus the first sampled token
    decode_s: float = 0.0   # every later token
    finish_reason: str = ""  # "length", "stop" (end of sequence) or "cancelled"


@dataclass(frozen=True, slots=True)
class BackendOptions:
    n_threads: int = 1
    instances: int = 1       # independent model instances, one generation each at a time
    context_length: int = 0  # 0: the model's own

    def validate(self) -> None:
        if self.n_threads < 1:
            raise InvalidParameter("n_threads", self.n_threads, "an integer >= 1")
        if self.instances < 1:
            raise InvalidParameter("instances", self.instances, "an integer >= 1")
        if self.context_length < 0:
            raise InvalidParameter("context_length", self.context_length, "an integer >= 0")


class Generation:
    """Iterator of tokens; `timings` is complete once iteration ends (or after `close()`)."""

    def __init__(self, steps: Iterator[int], tokens_in: int, params: GenerationParams,
                 detokenizer: "IncrementalDetokenizer", eos_ids: frozenset[int],
                 release: Callable[[], None] = lambda: None) -> None:
        self._steps = steps
        self._params = params
        self._detok = detokenizer
        self._eos = eos_ids
        self._release = release
        self._done = False
        self.timings = Timings(tokens_in=tokens_in)

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> Token:
        if self._done:
            raise StopIteration
        if self.timings.tokens_out >= self._params.max_new_tokens:
            self._finish("length")
            raise StopIteration
        t0 = time.perf_counter()
        try:
            token_id = next(self._steps)
        except StopIteration:
            self._finish("stop")
            raise
        except BaseException:
            self._finish("error")
            raise
        elapsed = time.perf_counter() - t0
        if self.timings.tokens_out == 0:
            self.timings.prefill_s += elapsed
        else:
            self.timings.decode_s += elapsed
        if token_id in self._eos and not self._params.ignore_eos:
            self._finish("stop")
            raise StopIteration
        self.timings.tokens_out += 1
        return Token(token_id, self._detok.push(token_id))

    def close(self) -> None:
        """Stop early (client went away); frees the model instance."""
        self._finish("cancelled")

    def _finish(self, reason: str) -> None:
        if self._done:
            return
        self._done = True
        self.timings.finish_reason = reason
        try:
            close = getattr(self._steps, "close", None)
            if close is not None:
                close()
        finally:
            self._release()

    def __enter__(self) -> "Generation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A dropped generation must still return its model instance to the pool.
        if not self._done:
            self.close()


@dataclass(slots=True)
class IncrementalDetokenizer:
    """Text of each new token, holding back bytes until a UTF-8 character is complete.

    Decodes a short window (the prefix/read-offset method) so each step is O(1) and merges
    that depend on the previous token (leading spaces, byte pieces) come out right.
    """

    decode: Callable[[Sequence[int]], str]
    ids: list[int] = field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix_text = self.decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self.decode(self.ids[self.prefix_offset:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return new_text[len(prefix_text):]
        return ""


class Backend(ABC):
    """One loaded model. `generate` may be called from several threads at once."""

    name: ClassVar[str] = ""
    # What `--model` must point at, for a user's error message: "GGUF file", ...
    model_kind: ClassVar[str] = "model path"
    # True: one model instance per slot (an instance serves one generation at a time);
    # False: one instance serves every slot concurrently.
    instance_per_slot: ClassVar[bool] = False
    # The offline tiny model this backend loads, inside the folder `python -m nodes build-tiny`
    # writes (models/): what a run uses when it names the backend but no model.
    tiny_model: ClassVar[str] = ""

    @classmethod
    def instances_for(cls, slots: int) -> int:
        """How many model instances (BackendOptions.instances) a node with `slots` needs."""
        return slots if cls.instance_per_slot else 1

    def __init__(self, options: BackendOptions = BackendOptions()) -> None:
        options.validate()
        self.options = options
        self.model_path: Path | None = None

    @abstractmethod
    def load(self, path: str | Path) -> None:
        """Load the model from a local path; raises ModelLoadError with a one-line reason."""

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Token ids of a prompt as the model will see it (with BOS where the model adds it)."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Most tokens (prompt plus generated) one request may hold."""

    @abstractmethod
    def _start(self, ids: list[int], params: GenerationParams
               ) -> tuple[Iterator[int], Callable[[], None]]:
        """Begin a generation: an iterator of sampled token ids (forever; the caller stops
        it) and a release function called once the generation ends."""

    @abstractmethod
    def _detokenizer(self) -> IncrementalDetokenizer:
        ...

    @abstractmethod
    def eos_ids(self) -> frozenset[int]:
        ...

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text))

    def generate(self, prompt: str | Sequence[int], params: GenerationParams) -> Generation:
        """Start a generation; iterate it for tokens, then read its `timings`."""
        params.validate()
        ids = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise InvalidParameter("prompt", prompt, "non-empty")
        if len(ids) + params.max_new_tokens > self.context_length:
            raise InvalidParameter(
                "max_new_tokens", params.max_new_tokens,
                f"<= context_length {self.context_length} - prompt tokens {len(ids)}")
        steps, release = self._start(ids, params)
        return Generation(steps, len(ids), params, self._detokenizer(), self.eos_ids(), release)

    def close(self) -> None:
        """Release the model."""


class ModelLoadError(RuntimeError):
    """The model path is missing or unreadable; the message is one line for the user."""
