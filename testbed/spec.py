"""The network part of a scenario spec: hosts, link rates, fluctuation, energy per bit.

Validated with pydantic; unknown keys are errors. Loaded alone from a scenario YAML's
`topology:` key so the testbed never depends on the rest of the scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MIN_RATE_MBIT = 1.0
MAX_RATE_MBIT = 10_000.0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FluctuationSpec(Strict):
    profile: str = Field(
        "stable", description="How each link's rate changes over time: a name registered "
                              "with testbed.fluctuation.register")
    amplitude: float = Field(0.2, ge=0.0, lt=1.0,
                             description="Relative band around nominal, 0.2 = +/-20%")
    period_s: float = Field(1.0, gt=0.0, description="Time between rate changes")
    step: float = Field(0.05, gt=0.0, lt=1.0,
                        description="random-walk: max relative step per period")
    sine_period_s: float = Field(30.0, gt=0.0, description="sine: period of the wave")
    trace: Path | None = Field(None, description="trace: CSV of time_s,link,rate_mbit")

    @field_validator("profile")
    @classmethod
    def _registered(cls, name: str) -> str:
        from testbed.fluctuation import PROFILES, profile_names  # registers the built-in ones

        if name not in PROFILES:
            raise ValueError(f"unknown fluctuation profile {name!r}; accepted: "
                             f"{', '.join(profile_names())}")
        return name

    @model_validator(mode="after")
    def _trace_needs_file(self) -> "FluctuationSpec":
        if self.profile == "trace" and self.trace is None:
            raise ValueError("fluctuation.trace: a CSV path is required when profile is 'trace'")
        return self


class TopologySpec(Strict):
    edges: int = Field(5, ge=1, le=32, description="Number of edge hosts edge1..edgeN")
    edge_rate_mbit: float = Field(100.0, ge=MIN_RATE_MBIT, le=MAX_RATE_MBIT)
    cloud_rate_mbit: float = Field(300.0, ge=MIN_RATE_MBIT, le=MAX_RATE_MBIT)
    cloud: bool = Field(True, description="Whether the cloud host exists")
    fluctuation: FluctuationSpec = FluctuationSpec()
    # Link-type energy per bit. Defaults: order of magnitude of wired access/metro links
    # (Baliga et al., "Green Cloud Computing", Proc. IEEE 2011: tens of nJ/bit end to end).
    edge_j_per_bit: float = Field(2.0e-8, ge=0.0, description="Transmission energy, J/bit")
    cloud_j_per_bit: float = Field(6.0e-8, ge=0.0, description="Transmission energy, J/bit")
    # netem options: accepted in the schema so the testbed can refuse them with a clear message
    # on kernels without netem, instead of Mininet's silent log line.
    delay_ms: float = Field(0.0, ge=0.0)
    jitter_ms: float = Field(0.0, ge=0.0)
    loss_pct: float = Field(0.0, ge=0.0, le=100.0)
    # What a link's rate_mbit means. "payload": the TCP payload rate of full-size segments, what
    # iperf3 and a transfer of N bytes see, so N*8/rate is the transfer time in both the emulator
    # and the simulator (the shaper puts rate * 1514/1448 on the wire). "wire": the Ethernet frame
    # rate, Mininet's meaning of bw (TCP then gets about 95.6% of it).
    rate_basis: Literal["payload", "wire"] = Field(
        "payload", description="payload: rate_mbit is TCP goodput; wire: Ethernet frame rate")

    @property
    def wants_netem(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0

    def link_names(self) -> list[str]:
        return [f"edge{i}" for i in range(1, self.edges + 1)] + (["cloud"] if self.cloud else [])

    def nominal_rate_mbit(self, link: str) -> float:
        return self.cloud_rate_mbit if link == "cloud" else self.edge_rate_mbit

    def j_per_bit(self, link: str) -> float:
        return self.cloud_j_per_bit if link == "cloud" else self.edge_j_per_bit


def load_topology(path: str | Path) -> tuple[TopologySpec, int]:
    """Read only `topology:` and `seed:` from a scenario YAML."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    return TopologySpec.model_validate(data.get("topology", {})), int(data.get("seed", 0))
