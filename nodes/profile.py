"""Hardware profiles: the compute timing and power a node emulates.

A profile says how fast one kind of hardware runs one model (prefill and decode tokens per
second, and how a request's rate falls when requests share the hardware) and how much power
it draws. Profiles are YAML files under ``nodes/profiles/<hardware>/<model>.yaml``, derived by
``nodes.roofline`` (``python -m nodes derive-profile``) or written from measurement.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
KINDS = ("edge", "cloud")


@dataclass(frozen=True)
class HardwareProfile:
    """Timing and power of one model on one kind of hardware.

    Concurrency: with n requests sharing the hardware each request runs at
    rate_n = rate_1 / (1 + concurrency_slowdown * (n - 1)); 0 means perfect batching,
    1 means time-sharing (n requests each get 1/n of the rate).
    """

    name: str
    kind: str
    hardware: str
    model: str
    prefill_tok_s: float
    decode_tok_s: float
    concurrency_slowdown: float
    idle_power_w: float
    max_power_w: float
    memory_gb: float
    source: str
    # How the figures were obtained (roofline inputs, efficiencies, per-number citations).
    derivation: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}" if isinstance(self.name, str) and self.name else "profile"
        for key in ("name", "hardware", "model", "source"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for key in ("prefill_tok_s", "decode_tok_s", "memory_gb"):
            _check_number(where, key, getattr(self, key), positive=True)
        for key in ("concurrency_slowdown", "idle_power_w", "max_power_w"):
            _check_number(where, key, getattr(self, key), positive=False)
        if self.max_power_w < self.idle_power_w:
            raise ValueError(f"{where}: max_power_w ({self.max_power_w}) must be >= "
                             f"idle_power_w ({self.idle_power_w})")
        if not isinstance(self.derivation, Mapping):
            raise ValueError(f"{where}: derivation must be a mapping, got "
                             f"{type(self.derivation).__name__}")

    def slowdown_factor(self, concurrency: int = 1) -> float:
        """1 + s·(n − 1): how much slower one request runs with n concurrent requests."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        return 1.0 + self.concurrency_slowdown * (concurrency - 1)

    def prefill_s(self, tokens_in: int, concurrency: int = 1) -> float:
        """Seconds to prefill tokens_in prompt tokens with `concurrency` requests running."""
        _check_count("tokens_in", tokens_in)
        return tokens_in / self.prefill_tok_s * self.slowdown_factor(concurrency)

    def decode_s(self, tokens_out: int, concurrency: int = 1) -> float:
        """Seconds to decode tokens_out tokens with `concurrency` requests running."""
        _check_count("tokens_out", tokens_out)
        return tokens_out / self.decode_tok_s * self.slowdown_factor(concurrency)

    def power_w(self, utilisation: float) -> float:
        """Node power at a utilisation in [0, 1]: P_idle + (P_max − P_idle)·u."""
        if not 0.0 <= utilisation <= 1.0:
            raise ValueError(f"utilisation must be in [0, 1], got {utilisation!r}")
        return self.idle_power_w + (self.max_power_w - self.idle_power_w) * utilisation

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (what `profile_from_dict` reads back)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["derivation"] = dict(self.derivation)
        return out


def _check_number(where: str, key: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{where}: {key} must be > 0, got {value!r}")
    if not positive and value < 0:
        raise ValueError(f"{where}: {key} must be >= 0, got {value!r}")


def _check_count(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0, got {value!r}")


_FIELDS = tuple(f.name for f in fields(HardwareProfile))
_REQUIRED = tuple(f.name for f in fields(HardwareProfile) if f.name != "derivation")


def profile_from_dict(data: Any, *, origin: str = "profile") -> HardwareProfile:
    """Build a profile from a YAML mapping; unknown or missing keys are errors."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected a mapping of profile fields, got "
                         f"{type(data).__name__}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {', '.join(map(str, unknown))}; "
                         f"accepted: {', '.join(_FIELDS)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{origin}: missing key(s) {', '.join(missing)}")
    values = dict(data)
    # A list of citations reads better in YAML; the field is one string.
    if isinstance(values.get("source"), list):
        values["source"] = "; ".join(str(s) for s in values["source"])
    values.setdefault("derivation", {})
    try:
        return HardwareProfile(**values)
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from None


def profile_to_yaml(profile: HardwareProfile, header: str = "") -> str:
    """YAML text for a profile, with an optional comment header."""
    text = yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True, width=100)
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + text


def list_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    """Names of the shipped profiles, e.g. 'xeon-4214r/llama2-7b'."""
    return sorted(p.relative_to(profiles_dir).with_suffix("").as_posix()
                  for p in profiles_dir.rglob("*.yaml"))


def load_profile_file(path: Path | str) -> HardwareProfile:
    """Load and validate a profile from a YAML file anywhere."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read profile {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"profile {path}: invalid YAML: {exc}") from None
    return profile_from_dict(data, origin=f"profile {path}")


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> HardwareProfile:
    """A shipped profile by name ('xeon-4214r/llama2-7b'), or a path to a .yaml file."""
    if isinstance(name, (str, Path)) and str(name).endswith((".yaml", ".yml")):
        return load_profile_file(name)
    names = list_profiles(profiles_dir)
    if name not in names:
        raise ValueError(f"unknown hardware profile {name!r}; accepted: {', '.join(names)} "
                         f"(or a path to a .yaml profile)")
    profile = load_profile_file(profiles_dir / f"{name}.yaml")
    if profile.name != name:
        raise ValueError(f"profile file {name}.yaml: name field is {profile.name!r}, "
                         f"expected {name!r}")
    return profile


def format_profiles_table(profiles: list[HardwareProfile]) -> str:
    """A fixed-width table of profiles, one per line."""
    header = (f"{'name':<26} {'kind':<5} {'prefill tok/s':>13} {'decode tok/s':>12} "
              f"{'slowdown':>8} {'idle W':>7} {'max W':>7} {'memory GB':>9}")
    lines = [header, "-" * len(header)]
    for p in profiles:
        lines.append(f"{p.name:<26} {p.kind:<5} {p.prefill_tok_s:>13.1f} {p.decode_tok_s:>12.2f} "
                     f"{p.concurrency_slowdown:>8.3f} {p.idle_power_w:>7.0f} "
                     f"{p.max_power_w:>7.0f} {p.memory_gb:>9.1f}")
    return "\n".join(lines)


def cli_profiles(args: Any = None) -> int:
    """`python -m nodes profiles`: print the shipped profiles as a table."""
    if args is None or isinstance(args, (list, tuple)):
        import argparse

        argparse.ArgumentParser(prog="python -m nodes profiles",
                                description=f"List the hardware profiles in {PROFILES_DIR}"
                                ).parse_args(args or [])
    profiles = [load_profile(n) for n in list_profiles()]
    print(format_profiles_table(profiles), file=sys.stdout)
    return 0
