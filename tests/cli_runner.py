"""Runs `python -m mimex_jax.train ARGS` (or `mimex_jax.evaluate`, `mimex_jax.envs.show`) as a
forked child of one server process that imported them once, so a test of a bad flag costs
milliseconds instead of the seconds of importing JAX, Flax, MJX and Orbax in a new interpreter.

The child is a real process: its own flags, its own exit code, its stdout and stderr (file
descriptors 1 and 2, so C++ and absl logging land there too) captured as a subprocess's would
be. An exception that escapes prints its traceback and exits 1, as Python does. The server never
initializes a JAX backend, so forking it is safe.
"""

import multiprocessing
import os
import subprocess
import sys
import tempfile
import traceback

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["mimex_jax.cli", "mimex_jax.evaluate"])


def _main(module, argv):
  """What `python -m module` runs, with `argv` as its sys.argv."""
  sys.argv = [module, *argv]  # ml_collections and absl read the flags from sys.argv
  if module == "mimex_jax.train":
    from mimex_jax import cli
    cli.run(sys.argv)
  elif module == "mimex_jax.evaluate":
    from mimex_jax import evaluate
    evaluate.main()
  elif module == "mimex_jax.envs.show":
    from absl import app
    from mimex_jax.envs import show
    app.run(show.main)
  else:
    raise ValueError(f"cli_runner runs mimex_jax.train, .evaluate or .envs.show, not {module}")


def _child(module, argv, cwd, stdout_path, stderr_path, pythonpath):
  os.chdir(cwd)
  if pythonpath:  # as PYTHONPATH would: ahead of the installed packages
    sys.path[1:1] = [str(p) for p in pythonpath]
  for path, fd in ((stdout_path, 1), (stderr_path, 2)):
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(target, fd)
    os.close(target)
  code = 0
  try:
    _main(module, argv)
  except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    if not isinstance(e.code, (int, type(None))):
      print(e.code, file=sys.stderr)
  except BaseException:  # noqa: BLE001  (what the interpreter would do with it)
    traceback.print_exc()
    code = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # skip the parent's atexit handlers, which the fork inherited


def run_train(args, cwd, timeout=600, pythonpath=()) -> subprocess.CompletedProcess:
  """Like `subprocess.run([python, -m, mimex_jax.train, *args], capture_output=True, text=True)`
  with `pythonpath`'s folders on PYTHONPATH."""
  return run_module("mimex_jax.train", args, cwd, timeout, pythonpath)


def run_module(module, args, cwd, timeout=600, pythonpath=()) -> subprocess.CompletedProcess:
  """`run_train` for `python -m module` (mimex_jax.train, mimex_jax.evaluate or
  mimex_jax.envs.show)."""
  with tempfile.TemporaryDirectory() as folder:
    stdout_path, stderr_path = os.path.join(folder, "out"), os.path.join(folder, "err")
    process = _CONTEXT.Process(target=_child, args=(module, list(args), cwd, stdout_path,
                                                      stderr_path, list(pythonpath)))
    process.start()
    process.join(timeout)
    if process.exitcode is None:
      process.kill()
      process.join()
      raise subprocess.TimeoutExpired([module, *args], timeout)
    with open(stdout_path) as out, open(stderr_path) as err:
      return subprocess.CompletedProcess([module, *args], process.exitcode,
                                         out.read(), err.read())
