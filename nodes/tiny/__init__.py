"""Tiny offline models for CI and laptops: a GGUF for llama.cpp and a transformers directory.

Deterministic from a seed; a stamp file beside them records a fingerprint of the config, the
corpus, the builder's source and the writer libraries' versions, so a second build with
nothing changed returns at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from nodes.tiny.config import CORPUS_PATH, TinyConfig, corpus_text, prompts

GGUF_NAME = "tiny.gguf"
HF_NAME = "tiny-hf"
STAMP_NAME = "tiny.build.json"

__all__ = ["TinyConfig", "TinyModels", "build_tiny", "corpus_text", "prompts"]


@dataclass(frozen=True, slots=True)
class TinyModels:
    gguf_path: Path
    hf_dir: Path
    built: bool  # False when the existing files were up to date
    fingerprint: str


def fingerprint(config: TinyConfig) -> str:
    h = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(CORPUS_PATH.read_bytes())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.name.encode() + src.read_bytes())
    for dist in ("gguf", "tokenizers", "transformers", "torch", "safetensors"):
        h.update(f"{dist}={metadata.version(dist)}".encode())
    return h.hexdigest()


def build_tiny(out_dir: Path | str, config: TinyConfig = TinyConfig(),
               force: bool = False) -> TinyModels:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gguf_path, hf_dir, stamp = out_dir / GGUF_NAME, out_dir / HF_NAME, out_dir / STAMP_NAME
    fp = fingerprint(config)
    up_to_date = (not force and gguf_path.is_file() and (hf_dir / "config.json").is_file()
                  and stamp.is_file() and _stamp_fingerprint(stamp) == fp)
    if up_to_date:
        return TinyModels(gguf_path, hf_dir, False, fp)
    from nodes.tiny.gguf_model import write_gguf
    from nodes.tiny.hf_model import write_hf

    gguf_vocab = write_gguf(gguf_path, config)
    hf_vocab = write_hf(hf_dir, config)
    stamp.write_text(json.dumps({"fingerprint": fp, "config": asdict(config),
                                 "gguf_vocab": gguf_vocab, "hf_vocab": hf_vocab},
                                indent=2, sort_keys=True) + "\n")
    return TinyModels(gguf_path, hf_dir, True, fp)


def _stamp_fingerprint(stamp: Path) -> str:
    try:
        return json.loads(stamp.read_text()).get("fingerprint", "")
    except (OSError, ValueError):
        return ""
