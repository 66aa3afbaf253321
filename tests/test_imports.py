"""vdm's module graph: every module imports on its own, no import cycle, no private name crosses
a module boundary.

(a) runs in one fresh interpreter that first imports the third-party packages vdm's modules
import at module level, but no vdm module, then forks one child per vdm module and imports only
that module there. Each child starts with no vdm module loaded, exactly as a fresh interpreter
would, so a module that works only when another was imported first (a missing import, an
import-order dependence, a cycle that breaks at import time) fails in its own child; the
third-party packages are shared because importing jax, flax and tfds again for each of ~100
modules would take minutes, and they cannot hide a fault in vdm's own imports.

(b) and (c) read the source (AST), so they also see imports inside functions: a lazy import
avoids the error at import time but keeps the cycle, which is what makes modules impossible to
move or test apart.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Checked for (c) besides vdm itself: code that uses vdm from outside.
CLIENTS = ("tests", "benchmarks", "experiments", "configs")


def _module_name(path: str) -> str:
  parts = os.path.relpath(path, ROOT)[:-len(".py")].split(os.sep)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def _python_files(folder: str) -> list[str]:
  out = []
  for directory, dirs, files in os.walk(os.path.join(ROOT, folder)):
    dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
    out += [os.path.join(directory, f) for f in sorted(files) if f.endswith(".py")]
  return out


MODULES = {_module_name(p): p for p in _python_files("vdm")}  # name -> path
TREES = {}


def _tree(path: str) -> ast.Module:
  if path not in TREES:
    with open(path) as f:
      TREES[path] = ast.parse(f.read(), path)
  return TREES[path]


def _package(name: str) -> str:
  """The package a module's relative imports start from."""
  return name if MODULES[name].endswith("__init__.py") else name.rpartition(".")[0]


def _owner(dotted: str) -> str | None:
  """The vdm module that defines `dotted` (a module, or a name inside one)."""
  while dotted and dotted not in MODULES:
    dotted = dotted.rpartition(".")[0]
  return dotted or None


def _imports(name: str, tree: ast.Module):
  """(line, imported vdm module) for every import statement of a module, at any depth.

  `from P import x` names module P.x when that is a module, else a name P defines (an edge to P:
  for a package, its __init__ and what that re-exports). Importing P.x also runs P's __init__
  first, which Python does before P.x and which is no edge of P.x's own.
  """
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name == "vdm" or alias.name.startswith("vdm."):
          yield node.lineno, _owner(alias.name)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        package = _package(name).split(".")
        base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
      if base != "vdm" and not base.startswith("vdm."):
        continue
      for alias in node.names:
        full = f"{base}.{alias.name}"
        yield node.lineno, full if full in MODULES else _owner(base)


def import_graph() -> dict[str, dict[str, int]]:
  """module -> {imported vdm module: first line}, self-imports dropped."""
  graph = {}
  for name, path in MODULES.items():
    edges = {}
    for line, target in _imports(name, _tree(path)):
      if target and target != name:
        edges.setdefault(target, line)
    graph[name] = edges
  return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_graph_sees_lazy_imports_and_package_re_exports():
  """The checker itself, on a made-up graph and on edges vdm is known to have."""
  assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b": 1}, "b": {}}) == []
  graph = import_graph()
  assert "vdm.generate.pipeline" in graph["vdm"]  # lazy, inside vdm.__getattr__
  assert "vdm.post.chain" in graph["vdm.post"]  # a package's re-export


def test_no_import_cycle_among_vdm_modules():
  graph = import_graph()
  found = cycles(graph)
  described = ["; ".join(f"{a} -> {b} (line {graph[a][b]})" for a in c for b in c
                         if b in graph[a]) for c in found]
  assert not found, "import cycles:\n  " + "\n  ".join(described)


def _private(name: str) -> bool:
  return name.startswith("_") and not name.startswith("__")


def private_uses(path: str) -> list[str]:
  """`from M import _x` and `alias._x` where alias is another vdm module, in one file."""
  here = _module_name(path) if path.startswith(os.path.join(ROOT, "vdm") + os.sep) else None
  tree = _tree(path)
  aliases, found = {}, []  # local name -> vdm module it is bound to
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name == "vdm" or alias.name.startswith("vdm."):
          if alias.asname:
            aliases[alias.asname] = alias.name
          else:
            aliases["vdm"] = "vdm"
    elif isinstance(node, ast.ImportFrom) and node.module and (
        node.module == "vdm" or node.module.startswith("vdm.")) and not node.level:
      for alias in node.names:
        full = f"{node.module}.{alias.name}"
        if _private(alias.name) and node.module != here:
          found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} from {node.module} import "
                       f"{alias.name}")
        if full in MODULES:
          aliases[alias.asname or alias.name] = full
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Attribute) and _private(node.attr)):
      continue
    chain, value = [], node.value
    while isinstance(value, ast.Attribute):
      chain.append(value.attr)
      value = value.value
    if isinstance(value, ast.Name) and value.id in aliases:
      module = ".".join([aliases[value.id]] + chain[::-1])
      if module in MODULES and module != here:
        found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {module}.{node.attr}")
  return found


def test_the_private_name_check_sees_both_forms():
  path = os.path.join(ROOT, "tests", "_private_probe.py")  # only parsed, never written
  TREES[path] = ast.parse(textwrap.dedent("""
      from vdm.generate import pipeline
      from vdm.data.importer import _secret
      import vdm.post.sr as sr
      def f():
        return pipeline._hidden, sr.__doc__, sr._apply, pipeline.Pipeline
  """))
  try:
    assert [u.split(" ", 1)[1] for u in private_uses(path)] == [
        "from vdm.data.importer import _secret", "vdm.generate.pipeline._hidden",
        "vdm.post.sr._apply"]
  finally:
    del TREES[path]


def test_no_private_name_is_used_outside_its_module():
  paths = list(MODULES.values()) + [p for folder in CLIENTS for p in _python_files(folder)]
  found = [use for path in paths for use in private_uses(path)]
  assert not found, "private names used outside their module:\n  " + "\n  ".join(found)


def _module_level_imports(tree: ast.Module) -> set[str]:
  """Top-level packages a module imports when it is imported (not inside functions)."""
  out, todo = set(), list(tree.body)
  while todo:
    node = todo.pop()
    if isinstance(node, ast.Import):
      out.update(a.name.split(".")[0] for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      out.add(node.module.split(".")[0])
    elif isinstance(node, (ast.If, ast.Try)):
      todo += node.body + node.orelse + getattr(node, "handlers", []) + getattr(
          node, "finalbody", [])
    elif isinstance(node, ast.ExceptHandler):
      todo += node.body
  return out - {"vdm", "__future__"}


_CHILDREN = textwrap.dedent("""
    import importlib, json, os, signal, sys, traceback
    third_party, modules = json.loads(sys.argv[1])
    for name in third_party:
      try:
        importlib.import_module(name)
      except Exception:  # an optional package: the child reports it if a module needs it
        pass
    assert not [m for m in sys.modules if m == "vdm" or m.startswith("vdm.")]
    failed = {}
    for module in modules:
      read, write = os.pipe()
      pid = os.fork()
      if pid == 0:
        os.close(read)
        signal.alarm(120)
        try:
          importlib.import_module(module)
          code = 0
        except BaseException:
          os.write(write, traceback.format_exc().encode())
          code = 1
        os._exit(code)
      os.close(write)
      with os.fdopen(read) as f:
        message = f.read()
      _, status = os.waitpid(pid, 0)
      if status:
        failed[module] = message or f"exit status {status}"
    print(json.dumps(failed))
""")


def test_every_module_imports_alone_in_a_fresh_interpreter():
  third_party = sorted(set().union(*(_module_level_imports(_tree(p)) for p in MODULES.values())))
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  args = json.dumps([third_party, sorted(MODULES)])
  out = subprocess.run([sys.executable, "-c", _CHILDREN, args],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-4000:]
  failed = json.loads(out.stdout.strip().splitlines()[-1])
  assert not failed, "\n\n".join(f"{m}:\n{e}" for m, e in failed.items())
