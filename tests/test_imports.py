"""Imports run one way: no module of mimex_jax imports one that imports it back (read from the
source, imports inside functions included), and training loads only the learner it trains."""

import ast
import os
import subprocess
import sys
import textwrap
from typing import Dict, List, Set

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def package_modules(root: str, package: str) -> Dict[str, str]:
  """`{dotted module name: file}` of every .py file under `root/package`; a package is its
  `__init__.py`."""
  modules = {}
  for folder, _, files in os.walk(os.path.join(root, package)):
    for file in files:
      if not file.endswith(".py"):
        continue
      parts = os.path.relpath(os.path.join(folder, file), root)[:-len(".py")].split(os.sep)
      if parts[-1] == "__init__":
        parts = parts[:-1]
      modules[".".join(parts)] = os.path.join(folder, file)
  return modules


def _is_main_guard(node: ast.AST) -> bool:
  test = getattr(node, "test", None)
  return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
          and isinstance(test.left, ast.Name) and test.left.id == "__name__"
          and any(isinstance(c, ast.Constant) and c.value == "__main__"
                  for c in test.comparators))


def imported_modules(name: str, path: str, modules: Dict[str, str]) -> Set[str]:
  """The package's modules that `name` imports anywhere in its file (top level, functions,
  conditionals), except under `if __name__ == "__main__":`: run as a script a file is the module
  `__main__`, a second module beside the one the package imports, so that is no cycle.

  An import names its module: `from a.b import c` is `a.b.c` when that is a module, else `a.b`.
  Parent packages, which Python runs first, are not counted: a package's `__init__` importing
  its own submodules would otherwise always be a cycle.
  """
  is_package = os.path.basename(path) == "__init__.py"
  found = set()
  pending = [ast.parse(open(path).read(), path)]
  while pending:
    node = pending.pop()
    if _is_main_guard(node):
      pending.extend(node.orelse)
      continue
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from this module's package, one level up per extra dot
        anchor = name.split(".")[:len(name.split(".")) - node.level + is_package]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    pending.extend(ast.iter_child_nodes(node))
  return {m for m in found if m in modules and m != name}


def import_graph(root: str, package: str) -> Dict[str, Set[str]]:
  modules = package_modules(root, package)
  return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
  """One cycle `[a, b, ..., a]` for each group of modules that import each other (Tarjan's
  strongly connected components, then a path around each)."""
  index, low, on_stack, stack, groups = {}, {}, set(), [], []

  def connect(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for succ in sorted(graph[node]):
      if succ not in index:
        connect(succ)
        low[node] = min(low[node], low[succ])
      elif succ in on_stack:
        low[node] = min(low[node], index[succ])
    if low[node] == index[node]:
      group = set()
      while True:
        member = stack.pop()
        on_stack.discard(member)
        group.add(member)
        if member == node:
          break
      if len(group) > 1:
        groups.append(group)

  for node in sorted(graph):
    if node not in index:
      connect(node)

  cycles = []
  for group in groups:
    start = min(group)
    # Breadth-first from `start` inside the group, back to `start`: the shortest cycle through it.
    parents, frontier, path = {start: None}, [start], None
    while frontier and path is None:
      next_frontier = []
      for node in frontier:
        for succ in sorted(graph[node] & group):
          if succ == start:
            path = [node]
            while parents[path[-1]] is not None:
              path.append(parents[path[-1]])
            path = path[::-1] + [start]
            break
          if succ not in parents:
            parents[succ] = node
            next_frontier.append(succ)
        if path is not None:
          break
      frontier = next_frontier
    cycles.append(path)
  return cycles


def test_no_import_cycle_in_the_package():
  graph = import_graph(REPO, "mimex_jax")
  assert {"mimex_jax.train", "mimex_jax.cli", "mimex_jax.agents.ppo.train_step"} <= set(graph)
  # The edges that used to close circles are read (function-level ones included).
  assert "mimex_jax.agents.drq.builder" in graph["mimex_jax.agents"]
  assert "mimex_jax.agents" in graph["mimex_jax.policy"]
  assert "mimex_jax.policy" in graph["mimex_jax"]  # inside `load_policy`
  cycles = find_cycles(graph)
  assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_names_the_cycle(tmp_path):
  """A made-up package: `a` imports `b` inside a function and `b` imports `a` back by a
  from-import; `c` imports `a` only under a main guard, and `d` only from `b`."""
  files = {
      "__init__.py": "",
      "a.py": "def f():\n  from pkg import b\n",
      "b.py": "from pkg.a import f\nfrom . import d\n",
      "c.py": "if __name__ == '__main__':\n  from pkg import a\n",
      "d.py": "import os\n",
  }
  (tmp_path / "pkg").mkdir()
  for name, text in files.items():
    (tmp_path / "pkg" / name).write_text(textwrap.dedent(text))
  graph = import_graph(str(tmp_path), "pkg")
  assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a", "pkg.d"}
  assert graph["pkg.c"] == set() and graph["pkg.d"] == set()
  assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def _loaded_modules(code: str) -> Set[str]:
  """The mimex_jax modules loaded after running `code` in a fresh Python (this checkout's)."""
  script = code + textwrap.dedent("""
      import sys, mimex_jax
      assert mimex_jax.__file__.startswith(sys.argv[1]), mimex_jax.__file__
      print(" ".join(m for m in sys.modules if m.startswith("mimex_jax")))
  """)
  result = subprocess.run([sys.executable, "-c", script, REPO], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return set(result.stdout.split())


def test_importing_the_trainer_loads_no_learner():
  loaded = _loaded_modules("import mimex_jax.train, mimex_jax.cli, mimex_jax.evaluate")
  assert "mimex_jax.train" in loaded and "mimex_jax.agents" in loaded  # the table of learners
  learners = sorted(m for m in loaded if m.startswith("mimex_jax.agents."))
  assert not learners, f"imported with the trainer: {learners}"


@pytest.mark.parametrize("agent,other", [("ppo", "drq"), ("drq", "ppo")])
def test_checking_a_config_loads_its_learner_only(agent, other):
  loaded = _loaded_modules(textwrap.dedent(f"""
      from configs import {agent}
      from mimex_jax import agents
      agents.check({agent}.get_config("smoke"), 1)
  """))
  assert f"mimex_jax.agents.{agent}.config_checks" in loaded
  assert not any(m.startswith(f"mimex_jax.agents.{other}") for m in loaded), sorted(loaded)
