"""Read back the scalars a run logged to tensorboard (``--report_to tensorboard``), for summaries and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def read_scalars(folder: str | os.PathLike, tags) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the ``tags`` logged under ``folder`` (every event file below it, so the invocations
    of a resumed run are joined; a step logged twice keeps the value of the file created later). Tags never logged map to {}.

    Needs the ``tensorboard`` package (the ``dev`` extra); raises ImportError with the install command without it.
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as error:
        raise ImportError("reading tensorboard logs needs tensorboard: pip install tensorboard") from error

    scalars: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for events in sorted(Path(folder).rglob("events.out.tfevents.*"), key=_creation_time):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        logged = set(accumulator.Tags().get("scalars", []))
        for tag in scalars:
            if tag in logged:
                scalars[tag].update({event.step: event.value for event in accumulator.Scalars(tag)})
    return scalars


def _creation_time(events: Path) -> tuple[float, float]:
    """When tensorboard created an event file: the time stamp in its name (``events.out.tfevents.<time>.<host>...``),
    which survives copies and downloads, then its modification time."""
    stamp = events.name.split(".")[3]
    return (float(stamp) if stamp.isdigit() else float("inf"), events.stat().st_mtime)
