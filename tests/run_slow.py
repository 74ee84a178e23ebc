"""The slow suite, one pytest process per test file: `python3 tests/run_slow.py` (README).

XLA's CPU backend maps each compiled program's kernels into memory mappings of their own, and a
process may hold at most `vm.max_map_count` of them (65,530 on these machines). The slow suite
in one process kept every file's programs: test_drq_bonus_encoder alone holds about 39,000
mappings, and the suite's last file pushed the process past the limit, where LLVM aborts
("Unable to allocate section memory", exit 134). `jax.clear_caches()` between files freed them
but corrupted the heap in the next file (jax 0.10.2), so each file gets a fresh process.

Arguments after the script go to every pytest run (e.g. `-x`, `-m long`); the default marker
expression is `slow and not long`. Exit code: the first failing file's, 5 if no file had a
selected test, else 0.
"""

import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))


def selected_files(marker: str, extra) -> list:
  """The test files holding at least one test that `marker` selects, in collection order."""
  listing = subprocess.run(
      [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marker, *extra, TESTS],
      capture_output=True, text=True, cwd=os.path.dirname(TESTS))
  if listing.returncode not in (0, 5):
    sys.stdout.write(listing.stdout + listing.stderr)
    sys.exit(listing.returncode)
  files = []
  for line in listing.stdout.splitlines():
    path = line.split("::", 1)[0]
    if "::" in line and path not in files:
      files.append(path)
  return files


def main(argv) -> int:
  extra = list(argv)
  marker = "slow and not long"
  if "-m" in extra:
    index = extra.index("-m")
    if index + 1 == len(extra):
      print("run_slow: -m needs a marker expression, e.g. -m long", file=sys.stderr)
      return 2
    marker = extra[index + 1]
    del extra[index:index + 2]
  files = selected_files(marker, extra)
  if not files:
    print(f"run_slow: no test selected by -m {marker!r}")
    return 5
  first_failure = 0
  for path in files:
    print(f"run_slow: {path}", flush=True)
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", marker, *extra, path],
                           cwd=os.path.dirname(TESTS))
    if code != 0 and not first_failure:
      first_failure = code
  return first_failure


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
