"""SIGTERM and SIGINT ask the training loop to stop after the current update, save and exit 0.

Schedulers (SLURM, Kubernetes, TPU maintenance) send SIGTERM some seconds before they kill a job;
Ctrl-C sends SIGINT. A second signal of either kind interrupts at once.
"""

import signal
from typing import Optional


class PreemptionGuard:
  """Context manager: `requested` holds the signal's name once one arrived."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested: Optional[str] = None
    self._previous = {}

  def _handle(self, signum, frame):
    if self.requested is not None:
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping without saving")
    self.requested = signal.Signals(signum).name

  def __enter__(self) -> "PreemptionGuard":
    for signum in self.SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: signals stay with whoever owns them
        pass
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
