"""`python -m nodes.bench`: what the gRPC node costs over calling the backend directly.

Prints one JSON line per backend: `load_s` (backend load), `raw_tok_s` (tokens out per second
of the backend iterated in this process), `node_tok_s` (the same request through a node
started with `python -m nodes serve` in its own process, one streaming client, no profile),
and `overhead_ratio` = node_tok_s / raw_tok_s. Rates are medians over `--repeats` runs after a
warm-up; both sides count the whole request (tokenisation, prefill, decode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from nodes.backends import BACKENDS, BackendOptions, GenerationParams, backend_class, create_backend
from nodes.config import NodeConfig, serve_argv
from nodes.tiny import build_tiny, prompts
from perllm.v1 import inference_pb2, inference_pb2_grpc

REPO = Path(__file__).resolve().parents[1]


def raw_rate(backend_name: str, model: Path, prompt: str, tokens: int, repeats: int,
             n_threads: int) -> tuple[float, float]:
    """(load_s, median tokens/s) of the backend called directly."""
    t0 = time.perf_counter()
    backend = create_backend(backend_name, BackendOptions(n_threads=n_threads))
    backend.load(model)
    load_s = time.perf_counter() - t0
    params = GenerationParams(max_new_tokens=tokens)
    rates = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        n = sum(1 for _ in backend.generate(prompt, params))
        if i:  # the first run warms up
            rates.append(n / (time.perf_counter() - t0))
    backend.close()
    return load_s, statistics.median(rates)


def node_rate(backend_name: str, model: Path, prompt: str, tokens: int, repeats: int,
              n_threads: int, chunk_tokens: int) -> float:
    """Median tokens/s through a node in its own process, one streaming client."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        serve_argv(NodeConfig(node_id="bench", backend=backend_name, model=str(model),
                              host="127.0.0.1", port=0, n_threads=n_threads,
                              chunk_tokens=chunk_tokens)),
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"node did not start (exit {proc.wait()}): {line!r}")
        with grpc.insecure_channel(f"127.0.0.1:{line.split()[1]}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            rates = []
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                n = 0
                for msg in stub.Generate(inference_pb2.GenerateRequest(
                        request_id=f"bench-{i}", prompt=prompt, max_new_tokens=tokens,
                        sent_unix_s=time.time()), timeout=600):
                    n += len(msg.chunk.token_ids)
                if n != tokens:
                    raise RuntimeError(f"node streamed {n} tokens, asked for {tokens}")
                if i:
                    rates.append(n / (time.perf_counter() - t0))
        return statistics.median(rates)
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodes.bench", description=__doc__)
    parser.add_argument("--models", default="models/", help="tiny models folder (built if "
                        "missing)")
    parser.add_argument("--backends", default=",".join(BACKENDS.names()))
    parser.add_argument("--tokens", type=int, default=512, help="max_new_tokens per request")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-threads", type=int, default=1)
    parser.add_argument("--chunk-tokens", type=int, default=NodeConfig().chunk_tokens)
    args = parser.parse_args(argv)
    build_tiny(args.models)  # the tiny models, if not built yet
    prompt = prompts()[0]
    for name in args.backends.split(","):
        model = Path(args.models) / backend_class(name).tiny_model
        load_s, raw = raw_rate(name, model, prompt, args.tokens, args.repeats, args.n_threads)
        node = node_rate(name, model, prompt, args.tokens, args.repeats, args.n_threads,
                         args.chunk_tokens)
        print(json.dumps({
            "backend": name, "model": str(model), "tokens": args.tokens,
            "repeats": args.repeats, "n_threads": args.n_threads,
            "chunk_tokens": args.chunk_tokens, "load_s": round(load_s, 3),
            "raw_tok_s": round(raw, 1), "node_tok_s": round(node, 1),
            "overhead_ratio": round(node / raw, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
