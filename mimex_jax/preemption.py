"""SIGTERM and SIGINT: before training starts a run ends at once (exit 0, one line); during
training the loop stops after the current update, saves and exits 0; a second signal stops at
once.

Schedulers (SLURM, Kubernetes, TPU maintenance) send SIGTERM some seconds before they kill a job;
Ctrl-C sends SIGINT. Python runs its signal handlers only between bytecodes of the main thread,
and the main thread may sit for minutes in XLA's compiler (which releases the GIL). So the
command line installs a `SignalWatch`: the C-level handler writes each signal to a pipe
(`signal.set_wakeup_fd`), and a watcher thread acts on it at once, whatever the main thread is
doing.
"""

import os
import signal
import sys
import threading
from typing import Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def latest_checkpoint(workdir: Optional[str]) -> Optional[str]:
  folder = os.path.join(workdir, "checkpoints") if workdir else None
  if not folder or not os.path.isdir(folder):
    return None
  updates = sorted(int(name) for name in os.listdir(folder) if name.isdigit())
  return os.path.join(folder, str(updates[-1])) if updates else None


def resume_hint(workdir: str, workdir_given: bool) -> str:
  """How to continue a run: the same command, plus its workdir when it was not given."""
  if workdir_given:
    return "run the same command to resume"
  return f"run the same command with --workdir={workdir} to resume"


class SignalWatch:
  """Process-wide: `install()` once, as early as the program can (`mimex_jax/__init__.py` does
  it for the training command, before JAX is imported).

  While `training` is False (imports, env build, restore, the first compile) a first signal
  prints one line and exits 0: nothing is lost, since nothing new exists yet. While `training`
  is True a first signal sets `requested` (the loop saves and stops) and a second prints one
  line and exits at once with 128 + the signal's number. `workdir` (and whether the user gave
  it) makes the lines name the latest checkpoint and how to resume.
  """

  def __init__(self, workdir: Optional[str] = None, workdir_given: bool = True):
    self.workdir = workdir
    self.workdir_given = workdir_given
    self.training = False
    self.requested: Optional[str] = None
    self._lock = threading.Lock()

  def install(self) -> "SignalWatch":
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    self.reclaim()
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=self._watch, args=(read_fd,), daemon=True,
                     name="signal-watch").start()
    global _ACTIVE
    _ACTIVE = self
    return self

  def reclaim(self) -> None:
    """(Re)installs the Python-level handlers that feed the wakeup pipe: a library that set its
    own since (jax.distributed's preemption notifier takes SIGTERM) would otherwise keep them."""
    for signum in SIGNALS:
      signal.signal(signum, lambda *_: None)  # the watcher thread acts; Python's turn is a no-op

  def _watch(self, read_fd: int) -> None:
    while True:
      data = os.read(read_fd, 1)
      if not data:
        return
      signum = data[0]
      if signum not in [int(s) for s in SIGNALS]:
        continue
      self.receive(signal.Signals(signum).name)

  def receive(self, name: str) -> None:
    with self._lock:
      latest = latest_checkpoint(self.workdir)
      if not self.training:
        if latest is None:
          _exit_with_line(f"stopped by {name} before training started: nothing saved yet", 0)
        _exit_with_line(f"stopped by {name} before training started: nothing new to save; "
                        f"latest checkpoint {latest}; "
                        f"{resume_hint(self.workdir, self.workdir_given)}", 0)
      if self.requested is None:
        self.requested = name
        return
      _exit_with_line(f"mimex_jax.train: error: second {name}: stopped at once without "
                      f"saving; last checkpoint: {latest or 'none'}",
                      128 + int(signal.Signals[name]))


def watch_signals() -> SignalWatch:
  """The process's `SignalWatch`, installed now if it is not yet (None off the main thread)."""
  if _ACTIVE is None:
    try:
      SignalWatch().install()
    except ValueError:  # not the main thread: signals stay with whoever owns them
      return None
  return _ACTIVE


def _exit_with_line(line: str, code: int) -> None:
  sys.stdout.flush()
  sys.stderr.flush()
  # On stderr a progress bar may hold the current line: start a fresh one.
  os.write(1 if code == 0 else 2, (line + "\n" if code == 0 else "\n" + line + "\n").encode())
  os._exit(code)  # now: the main thread may be inside a compile that takes minutes


_ACTIVE: Optional[SignalWatch] = None


class PreemptionGuard:
  """Context manager around the training loop: `requested` holds the signal's name once one
  arrived. Under the command line's `SignalWatch` it switches that to training; without one
  (the Python API) it installs plain handlers, and a second signal raises KeyboardInterrupt."""

  def __init__(self):
    self._requested: Optional[str] = None
    self._previous = {}

  @property
  def requested(self) -> Optional[str]:
    return _ACTIVE.requested if _ACTIVE is not None else self._requested

  def _handle(self, signum, frame):
    if self._requested is not None:
      raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping without saving")
    self._requested = signal.Signals(signum).name

  def __enter__(self) -> "PreemptionGuard":
    if _ACTIVE is not None:
      try:
        _ACTIVE.reclaim()
      except ValueError:  # not the main thread
        pass
      _ACTIVE.training = True
      return self
    for signum in SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: signals stay with whoever owns them
        pass
    return self

  def __exit__(self, *exc) -> None:
    if _ACTIVE is not None:
      return  # the loop is over: a signal now meets the summary line, as a second one would
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
