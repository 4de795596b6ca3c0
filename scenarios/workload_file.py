"""A workload as a JSON file, so the driver in the `user` host replays exactly what the
runner generated (attachments are rebuilt there from each service's seed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from scenarios.workload import WorkloadItem
from scheduler.service import Service


def save_workload(items: list[WorkloadItem], path: Path) -> None:
    data = [{"arrival_s": item.arrival_s, "service": asdict(item.service),
             "output_tokens": item.output_tokens} for item in items]
    path.write_text(json.dumps(data))


def load_workload(path: Path) -> list[WorkloadItem]:
    return [WorkloadItem(arrival_s=entry["arrival_s"], service=Service(**entry["service"]),
                         output_tokens=entry.get("output_tokens", 0))
            for entry in json.loads(Path(path).read_text())]
