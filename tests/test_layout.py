"""The architecture's import rules, read from the source with `ast` (function-level
imports included): signal -> tasks -> learner -> prediction -> loss -> metrics flows one
way. Learners, meta-training, losses, the Fisher and fields reach nothing in tasks/ or
data/, even through other modules; data/ reaches no learner, meta-training or task."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'mclnf_jax'


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def direct_imports() -> dict[str, set[str]]:
  modules = {module_name(p): p for p in PACKAGE.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module:
        named = {f'{node.module}.{a.name}' for a in node.names}
        # `from package import module` reaches the module; the package's own imports
        # (the API that mclnf_jax/__init__.py loads on first use) only if names are not modules.
        found |= named if named <= set(modules) else named | {node.module}
    graph[name] = {m for m in found if m in modules}
  return graph


GRAPH = direct_imports()


def reachable(start: str) -> set[str]:
  seen, todo = set(), [start]
  while todo:
    for m in GRAPH[todo.pop()] - seen:
      seen.add(m)
      todo.append(m)
  return seen


def within(prefix: str) -> list[str]:
  return sorted(m for m in GRAPH if m == prefix or m.startswith(prefix + '.'))


def forbidden(module: str, prefixes: tuple[str, ...]) -> list[str]:
  return sorted(m for m in reachable(module)
                if any(m == p or m.startswith(p + '.') for p in prefixes))


CORE = (within('mclnf_jax.learners') + within('mclnf_jax.fields') +
        ['mclnf_jax.meta', 'mclnf_jax.checkpoints', 'mclnf_jax.losses', 'mclnf_jax.fisher'])


def test_the_graph_sees_the_package():
  assert 'mclnf_jax.learners.modular' in GRAPH and 'mclnf_jax.data.scene' in GRAPH
  assert 'mclnf_jax.learners.base' in reachable('mclnf_jax.learners.modular')


@pytest.mark.parametrize('module', CORE)
def test_core_reaches_no_task_or_data_module(module):
  assert forbidden(module, ('mclnf_jax.tasks', 'mclnf_jax.data',
                            'mclnf_jax.experiment', 'mclnf_jax.report')) == []


@pytest.mark.parametrize('module', within('mclnf_jax.data'))
def test_data_reaches_no_learner_meta_training_or_task(module):
  assert forbidden(module, ('mclnf_jax.learners', 'mclnf_jax.meta', 'mclnf_jax.checkpoints',
                            'mclnf_jax.tasks', 'mclnf_jax.experiment')) == []
