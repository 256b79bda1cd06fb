"""Read back the scalars a run logged to tensorboard (``--report_to tensorboard``), for summaries and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def read_scalars(folder: str | os.PathLike, tags) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the ``tags`` logged under ``folder`` (every event file below it, so the invocations
    of a resumed run are joined; a step logged twice keeps the later file's value). Tags never logged map to {}.

    Needs the ``tensorboard`` package (the ``dev`` extra); raises ImportError with the install command without it.
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as error:
        raise ImportError("reading tensorboard logs needs tensorboard: pip install tensorboard") from error

    scalars: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for events in sorted(Path(folder).rglob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        logged = set(accumulator.Tags().get("scalars", []))
        for tag in scalars:
            if tag in logged:
                scalars[tag].update({event.step: event.value for event in accumulator.Scalars(tag)})
    return scalars
