"""One run per workdir: a lock file that the kernel releases when its holder dies.

A scheduler that requeues a job while the first copy still runs would otherwise start a second
run in the same `--workdir`; both would train, save the same checkpoints and write every log line
twice. The lock is an `fcntl.flock` on `<workdir>/.lock`, so a run that was killed (SIGKILL, a
lost node) leaves no lock behind that blocks the next one; the file's text only names the holder
(process, host, start time) for the refusal's message.
"""

import datetime
import fcntl
import json
import os
import socket
from typing import Optional

LOCK_FILE = ".lock"


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir's lock."""


class WorkdirLock:
  """Held from `acquire` until `release` (or the process's end)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> None:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirBusyError(
          f"another run is training in {os.path.dirname(self.path)} ({holder}); wait for it to "
          f"end (a second run would write the same checkpoints and log lines), or use another "
          f"--workdir") from None
    # Ours now: whoever wrote the text before us has died (the kernel dropped its lock).
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds")}).encode())
    os.fsync(fd)
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.ftruncate(self._fd, 0)
    except OSError:  # a full or failing disk: the lock itself still goes with the close
      pass
    os.close(self._fd)  # closing drops the flock
    self._fd = None


def _read_holder(fd: int) -> str:
  try:
    text = os.pread(fd, 4096, 0).decode()
    holder = json.loads(text)
    return f"process {holder['pid']} on host {holder['host']}, since {holder['started']}"
  except (OSError, ValueError, KeyError):
    return "a process that has not written its name yet"
