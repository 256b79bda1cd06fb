"""Stopping a training run cleanly: on its time budget, or on SIGTERM / Ctrl-C, after the step in progress."""

from __future__ import annotations

import os
import signal
import threading
import time


class StopRequest:
    """Why a training loop should stop early, cleanly: its wall-clock budget, or a SIGTERM / SIGINT.

    Args:
        minutes: the budget of this invocation (None: unlimited).

    Between ``listen()`` and ``close()`` (or inside ``with StopRequest(minutes) as stop:``) the first SIGTERM (what
    job schedulers such as SLURM send before they kill a job) or SIGINT (Ctrl-C) is recorded instead of ending the
    process: the loop finishes its step, saves a checkpoint and the final model, as when the budget runs out. A
    second signal acts as usual (the previous handlers are back). Handlers are only installed in the main thread
    (Python allows no others). Under torchrun, which kills its workers about 30 s after forwarding a SIGTERM, the
    step and the saves must fit in that time.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, minutes: float | None):
        self.minutes = minutes
        self.start = time.monotonic()
        self.signal_name: str | None = None
        self._previous_handlers: dict = {}

    def listen(self) -> StopRequest:
        """Record the stop signals from now on (until `close`)."""
        if threading.current_thread() is threading.main_thread() and not self._previous_handlers:
            for signum in self.SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._record)
        return self

    def close(self) -> None:
        """Give the stop signals back to the handlers they had before `listen`."""
        for number, handler in self._previous_handlers.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: a handler set from C
        self._previous_handlers.clear()

    def __enter__(self) -> StopRequest:
        return self.listen()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _record(self, signum: int, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        self.close()  # a second signal, of either kind, acts as usual

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def requested(self) -> bool:
        return self.signal_name is not None or (self.minutes is not None and self.elapsed() >= self.minutes * 60)

    def reason(self) -> str:
        """For logs and train_results.json; a process can stop because another one was asked to."""
        if self.signal_name is not None:
            return f"{self.signal_name} received"
        if self.requested():
            return f"time budget of {self.minutes:g} minutes reached"
        return "another process was asked to stop"


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGTERM / SIGINT to the main process (see `StopRequest`), but
    still obey their own main process.

    A Ctrl-C or a scheduler's SIGTERM reaches every process of the job; workers that died of it would take the
    next batch (or the validation running at that moment) with them before the main process could finish and
    save. So SIGINT is ignored, and SIGTERM is ignored unless the main process sent it: that is how a main process
    that exits while its workers are alive (after any exception in the loop) ends them (``multiprocessing``
    terminates daemon children, then joins them). A worker ignoring that SIGTERM too would make the exit wait
    forever. PyTorch's own worker handler makes the same distinction; it can only be kept together with ignoring
    other senders by reading the sender, which needs ``signal.sigwaitinfo`` (not on macOS / Windows: there
    workers keep PyTorch's handler and die of any SIGTERM).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not hasattr(signal, "sigwaitinfo"):
        return
    # Blocked in this thread (and in every thread started after it), the signal waits for `sigwaitinfo`.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(
        target=_exit_on_sigterm_from, args=(os.getppid(),), name="sigterm-from-main-process", daemon=True
    ).start()


def _exit_on_sigterm_from(main_pid: int) -> None:
    """Wait for SIGTERMs; exit at once (status 0, as PyTorch's worker handler does) on one sent by ``main_pid``."""
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == main_pid:
            os._exit(0)  # 0: the main process's DataLoader does not report the worker as failed
