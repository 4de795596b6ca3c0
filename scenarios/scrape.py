"""Fetch Prometheus /metrics texts into files: `python -m scenarios.scrape OUT_DIR NAME=URL ...`
writes OUT_DIR/NAME.prom for each target.

The emulated run starts it on the user host after each policy's workload (that namespace
reaches the scheduler and every node), so the servers' own counters are kept beside the
results. A fetch that fails writes its error into the file instead: a scrape never fails a run.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

TIMEOUT_S = 5.0


def scrape(out_dir: Path, targets: dict[str, str], timeout_s: float = TIMEOUT_S) -> None:
    """Write each target URL's text to out_dir/<name>.prom, or a comment saying why not."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, url in targets.items():
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                text = response.read().decode()
        except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
            text = f"# scrape of {url} failed: {e}\n"
        (out_dir / f"{name}.prom").write_text(text)


def _target(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"a target is NAME=URL with a plain NAME (got {text!r})")
    return name, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.scrape",
                                     description="Fetch /metrics texts into NAME.prom files.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("targets", type=_target, nargs="+", metavar="NAME=URL")
    args = parser.parse_args(argv)
    scrape(args.out_dir, dict(args.targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
