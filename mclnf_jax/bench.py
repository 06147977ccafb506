"""Benchmark of the inner loop: `python -m mclnf_jax.bench [options]`.

Prints one JSON line per measurement. Timings are medians of --repeats, taken after
compilation and a warm-up call; what is compared (a step and the gemm, the FIM and MSE
steps, ours and the PyTorch twin) is timed in turn, so that both see the same load on a
shared machine. Steps are built from the project's own learners, fields and losses, so
the numbers are those of what users run:

  env     backend, device, jax version, CPU count
  gemm    f32 rate of a large jitted matmul: the yardstick of every FLOP rate
  sine    jnp.sin ('exact') against each --sines entry on a large array (and its grad)
  tto     one test-time-optimisation step (SGD, MSE) of the modular setting (`mcl`: E
          experts, each on its own strip) and of the single network (`ol`: every pixel),
          for each --sines entry: ms per step, GFLOP/s and the fraction of the gemm rate
          (a gemm timed in turn with the step)
  fim     the modular step with the FIM loss (`modular_fim`, diag and kfac) / the MSE step
  fim_shapes  the two matmul shapes of one expert's hidden layer, each jitted alone:
          rows (N x W @ W x W: forward, input gradient, the FIM's q) and contraction
          ((N x W)^T @ N x W: weight gradient, the diagonal Fisher), and the FIM/MSE
          ratio they alone would give a hidden layer
  tto_shapes  the matmuls of one modular TTO step at the step's own shapes (per layer:
          forward and input-gradient row matmuls, weight-gradient contraction over the
          samples; batched over the experts), each jitted alone and timed in turn with
          the step and a gemm: their GFLOP/s, the step's rate as a fraction of theirs,
          and theirs as a fraction of the gemm (the step's FLOP-rate bound)
  meta    one second-order meta-step of `mcl` per --meta_inner_steps: peak memory
          (compiled memory analysis) and, for --meta_time, its time
  table6  TTO episodes per second as compute_cost measures them for the paper's Table 6
          (T tasks, 128 steps each, batch 1), with its parameters and planned memory
  torch   (--torch) the PyTorch eager twin of the modular step (a subprocess) and our
          modular step timed in turn --torch_rounds times; speed-up of medians
  goals   the issue's targets, each with its value and whether it is met

FLOPs of a step count matmuls only: the forward pass 2 N sum_l d_l d_(l+1), the backward
twice that less the input gradient of layer 0, so 2 N (3 sum_l d_l d_(l+1) - d_0 d_1)
with N the pixels of the image and d = (2, width, ..., width, 3).
"""
import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from mclnf_jax import compute_cost, meta, process
from mclnf_jax.configs import base
from mclnf_jax.fields import param_count
from mclnf_jax.fields.sine import get_sine
from mclnf_jax.fields.siren import layer_dims
from mclnf_jax.learners import build
from mclnf_jax.tasks import task_spec
from mclnf_jax.tasks.factory import make_modality
from mclnf_jax.types import stack_episodes

MEASUREMENTS = ('gemm', 'sine', 'tto', 'tto_shapes', 'fim', 'meta', 'table6')
TORCH_DIR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'bench'
TORCH_SCRIPT = TORCH_DIR / 'torch_tto_reference.py'
TORCH_META_SCRIPT = TORCH_DIR / 'torch_meta_reference.py'
FLOP_FORMULA = '2*N*(3*sum_l d_l*d_(l+1) - d_0*d_1); N = pixels; matmuls only'
MEMORY_SOURCE = 'compiled memory_analysis: temp + argument + output - alias bytes'


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog='python -m mclnf_jax.bench',
                              description=__doc__.split('\n', 1)[0])
  add = p.add_argument
  add('--only', default=','.join(MEASUREMENTS), help='comma list of measurements')
  add('--resolution', type=int, default=180, help='image side in pixels')
  add('--tasks', type=int, default=4, help='tasks = experts = column strips')
  add('--width', type=int, default=128, help='expert width (modular setting)')
  add('--single_width', type=int, default=256, help='width of the single network')
  add('--depth', type=int, default=5, help='linear layers per network')
  add('--w0', type=float, default=30.0)
  add('--lr', type=float, default=1e-2, help='SGD rate of every step measured')
  add('--sines', default='fast,exact',
      help='sines timed in tto; the first also serves fim, meta, table6 and goals')
  add('--steps', type=int, default=16, help='TTO steps per timing')
  add('--repeats', type=int, default=5, help='timings per median')
  add('--gemm_size', type=int, default=0, help='0: 2048 on CPU, 8192 elsewhere')
  add('--sine_size', type=int, default=4 * 8100 * 128, help='elements of the sine array')
  add('--fishers', default='diag,kfac')
  add('--meta_batch', type=int, default=1, help='episodes per meta-step')
  add('--meta_inner_steps', default='4,16,32', help='inner step counts (memory)')
  add('--meta_time', default='4', help='inner step counts also timed; "all", or "" for none')
  add('--meta_repeats', type=int, default=3)
  add('--table6_steps', type=int, default=128, help='TTO steps per task')
  add('--table6_learners', default='modular')
  add('--table6_repeats', type=int, default=3)
  add('--torch', action=argparse.BooleanOptionalAction, default=False,
      help='also run the PyTorch twin (needs torch)')
  add('--torch_script', default=str(TORCH_SCRIPT))
  add('--torch_meta_script', default=str(TORCH_META_SCRIPT))
  add('--meta_remat', default='step',
      help='remat policies of the meta-step (meta.remat) measured: comma list of '
           'step,dots,none')
  add('--torch_threads', type=int, default=0, help='0: torch default')
  add('--keep_freed_memory', action=argparse.BooleanOptionalAction, default=True,
      help="glibc keeps freed memory for XLA's per-call temporaries, as the entry points "
           'do (process.keep_freed_memory); the twins get the same')
  add('--torch_rounds', type=int, default=3, help='twin and our step timed in turn')
  p.set_defaults(kept_freed_memory=False)     # configure() says whether it was
  return p.parse_args(argv)


def _csv(text: str) -> list[str]:
  return [t.strip() for t in text.split(',') if t.strip()]


def _ready(tree: Any) -> Any:
  return jax.block_until_ready(tree)


def step_flops(dims: list[int], n: int) -> int:
  """Matmul FLOPs of one forward + backward pass over n samples (FLOP_FORMULA)."""
  pairs = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
  return 2 * n * (3 * pairs - dims[0] * dims[1])


# ---- settings built from the project's config, learners and modality --------------


class Setting(NamedTuple):
  modality: Any
  learner: Any
  episode: Any


def _image(a: argparse.Namespace, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.uniform(size=(a.resolution, a.resolution, 3)).astype(np.float32)


def make_setting(a: argparse.Namespace, learner: str, sine: str, *, fisher: str = 'diag',
                 inner_steps: int = 1, remat: str = 'step') -> Setting:
  """A learner of the base config with the benchmark's sizes, on one random image."""
  c = base.base_config()
  c.data.resolution = a.resolution
  c.tasks.grid = (1, a.tasks)
  c.field.update(depth=a.depth, w0=a.w0, sine=sine)
  c.fim.fisher = fisher
  c.meta.update(inner_steps=inner_steps, first_order=False, remat=remat)
  for name, width in (('modular', a.width), ('modular_fim', a.width), ('ol', a.single_width)):
    c.methods[name].update(width=width, tto_opt='sgd', tto_lr=a.lr, inner_opt='sgd',
                           inner_lr=a.lr)
  modality = make_modality(c)
  episode = jax.tree_util.tree_map(jnp.asarray, modality.episode(_image(a, 0)))
  return Setting(modality, build(c, learner, task_spec(modality)), episode)


# ---- measurements -----------------------------------------------------------------


def gemm_timer(a: argparse.Namespace) -> tuple[Callable[[], float], int]:
  """(a timer of one n x n float32 matmul in ms, compiled and warmed up; n)."""
  n = a.gemm_size or (2048 if jax.default_backend() == 'cpu' else 8192)
  x, y = (jax.random.normal(jax.random.key(i), (n, n), jnp.float32) for i in (0, 1))
  mm = jax.jit(jnp.matmul).lower(x, y).compile()
  return _timer(lambda: _ready(mm(x, y))), n


def _timer(fn: Callable[[], Any], per: int = 1) -> Callable[[], float]:
  """fn (which must block) warmed up, then a function timing one call: ms / per."""
  fn()

  def once() -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3 / per
  return once


def interleaved_runs(timers: dict[str, Callable[[], float]],
                     rounds: int) -> dict[str, list[float]]:
  """Every time of each timer, called in turn `rounds` times: on a shared machine all of
  them see the same load, so their ratios hold better than their values."""
  times = {k: [] for k in timers}
  for _ in range(rounds):
    for k, once in timers.items():
      times[k].append(once())
  return times


def interleaved(timers: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
  """The median of each timer's interleaved_runs."""
  return {k: statistics.median(v) for k, v in interleaved_runs(timers, rounds).items()}


def bench_gemm(a: argparse.Namespace) -> dict:
  once, n = gemm_timer(a)
  ms = interleaved({'gemm': once}, a.repeats)['gemm']
  return {'bench': 'gemm', 'n': n, 'dtype': 'float32', 'precision': 'default', 'ms': ms,
          'gflops': 2 * n**3 / ms / 1e6}


def bench_sine(a: argparse.Namespace) -> dict:
  x = 30.0 * jax.random.normal(jax.random.key(0), (a.sine_size,), jnp.float32)
  timers = {}
  for name in dict.fromkeys(['exact'] + _csv(a.sines)):
    sin = get_sine(name)
    value, grad = jax.jit(sin), jax.jit(jax.grad(lambda v, s=sin: s(v).sum()))
    timers[name] = _timer(lambda f=value: _ready(f(x)))
    timers[name + ' grad'] = _timer(lambda f=grad: _ready(f(x)))
  ms = interleaved(timers, a.repeats)
  names = [k for k in timers if not k.endswith(' grad')]
  return {'bench': 'sine', 'size': a.sine_size, 'ms': {k: ms[k] for k in names},
          'grad_ms': {k: ms[k + ' grad'] for k in names},
          'speedup_vs_exact': {k: ms['exact'] / ms[k] for k in names}}


def step_runner(s: Setting, a: argparse.Namespace) -> tuple[Callable[[], None], Any, int]:
  """(a call of learner.adapt over --steps steps that blocks, compiled once, its state
  donated and carried on; the compiled executable; the parameter count of one network)."""
  params = s.learner.init(jax.random.key(0))
  box = {'state': s.learner.start(params)}
  steps = jnp.int32(a.steps)
  adapt = jax.jit(s.learner.adapt, donate_argnums=0).lower(
      box['state'], s.episode, steps).compile()

  def run():
    box['state'] = _ready(adapt(box['state'], s.episode, steps))
  return run, adapt, param_count(params)


def step_timer(s: Setting, a: argparse.Namespace) -> tuple[Callable[[], float], int]:
  """(a timer of learner.adapt in ms per step (step_runner); the parameter count)."""
  run, _, params = step_runner(s, a)
  return _timer(run, per=a.steps), params


def _tto_record(a: argparse.Namespace, sine: str, setting: str, params: int,
                ms: float) -> dict:
  modular = setting == 'modular'
  learner, width = ('modular', a.width) if modular else ('ol', a.single_width)
  flops = step_flops(list(layer_dims(2, width, a.depth, 3)), a.resolution**2)
  experts = a.tasks if modular else 1
  return {'bench': 'tto', 'setting': setting, 'learner': learner, 'sine': sine,
          'ms_per_step': ms, 'gflop_per_step': flops / 1e9, 'gflops': flops / ms / 1e6,
          'flop_formula': FLOP_FORMULA, 'pixels': a.resolution**2, 'experts': experts,
          'width': width, 'depth': a.depth, 'params': params * experts, 'optimizer': 'sgd',
          'steps_per_timing': a.steps}


def bench_tto(a: argparse.Namespace, sine: str, setting: str, with_gemm: bool) -> dict:
  """One TTO step; with_gemm: a gemm timed in turn with it gives its fraction."""
  learner = 'modular' if setting == 'modular' else 'ol'
  step, params = step_timer(make_setting(a, learner, sine), a)
  timers = {'step': step}
  if with_gemm:
    timers['gemm'], n = gemm_timer(a)
  ms = interleaved(timers, a.repeats)
  r = _tto_record(a, sine, setting, params, ms['step'])
  if with_gemm:
    gemm = 2 * n**3 / ms['gemm'] / 1e6
    r |= {'gemm_gflops': gemm, 'fraction_of_gemm': r['gflops'] / gemm}
  return r


def bench_fim(a: argparse.Namespace, sine: str, fisher: str) -> dict:
  """The FIM step and the MSE step of the modular learner, timed in turn: the ratio of
  their medians and the range of the ratios within a round."""
  timers = {name: step_timer(make_setting(a, name, sine, fisher=fisher), a)[0]
            for name in ('modular', 'modular_fim')}
  runs = interleaved_runs(timers, a.repeats)
  ms = {k: statistics.median(v) for k, v in runs.items()}
  per_round = [f / m for f, m in zip(runs['modular_fim'], runs['modular'])]
  return {'bench': 'fim', 'fisher': fisher, 'sine': sine, 'ms_per_step': ms['modular_fim'],
          'mse_ms_per_step': ms['modular'], 'ratio_to_mse': ms['modular_fim'] / ms['modular'],
          'ratio_range': [min(per_round), max(per_round)]}


def bench_fim_shapes(a: argparse.Namespace, calls: int = 20) -> dict:
  """Why the Fisher costs more than its FLOPs: its sample contraction against a row
  matmul of the same FLOPs, for one expert's N = pixels / tasks samples."""
  n, w = a.resolution**2 // a.tasks, a.width
  x, y = (jax.random.normal(jax.random.key(i), (n, w), jnp.float32) for i in (0, 1))
  m = jax.random.normal(jax.random.key(2), (w, w), jnp.float32)
  rows = jax.jit(jnp.matmul).lower(x, m).compile()
  contraction = jax.jit(lambda u, v: u.T @ v).lower(x, y).compile()

  def repeat(fn, *args):
    def run():                 # one result alive at a time: its buffer is reused
      for _ in range(calls):
        _ready(fn(*args))
    return _timer(run, per=calls)
  ms = interleaved({'rows': repeat(rows, x, m), 'contraction': repeat(contraction, x, y)},
                   a.repeats)
  r, c = ms['rows'], ms['contraction']
  return {'bench': 'fim_shapes', 'samples': n, 'width': w, 'ms': ms,
          'contraction_over_rows': c / r,
          # a hidden layer's FIM/MSE step ratio if only matmuls took time: the MSE step
          # has 2 row matmuls and 1 contraction, the FIM step one more of each
          'fim_over_mse_matmuls_only': (3 * r + 2 * c) / (2 * r + c)}


class Matmul(NamedTuple):
  """One dot_general of a step: operand shapes and `lax.dot_general` dimension numbers."""
  name: str
  lhs: tuple[int, ...]
  rhs: tuple[int, ...]
  dims: tuple            # ((lhs_contract, rhs_contract), (lhs_batch, rhs_batch))

  def sizes(self) -> tuple[int, int, int, int]:
    """(batch B, contraction K, lhs free M, rhs free N): the product is B x M x K x N."""
    (lc, _), (lb, _) = self.dims
    b = int(np.prod([self.lhs[i] for i in lb]))
    k = int(np.prod([self.lhs[i] for i in lc]))
    return b, k, int(np.prod(self.lhs)) // (b * k), int(np.prod(self.rhs)) // (b * k)

  @property
  def flops(self) -> int:
    b, k, m, n = self.sizes()
    return 2 * b * k * m * n


def matmul_form(m: Matmul) -> tuple[int, int, tuple[int, int]]:
  """(B, K, sorted (M, N)): what a matmul costs, whichever operand comes first."""
  b, k, lhs, rhs = m.sizes()
  return b, k, tuple(sorted((lhs, rhs)))


ROWS = (((2,), (1,)), ((0,), (0,)))      # [E, n, i] @ [E, i, o]: forward
BACK = (((2,), (2,)), ((0,), (0,)))      # [E, n, o] @ [E, i, o]^T: input gradient
SAMPLES = (((1,), (1,)), ((0,), (0,)))   # [E, n, i]^T @ [E, n, o]: weight gradient


def tto_matmuls(a: argparse.Namespace, samples: int) -> list[Matmul]:
  """The matmuls of one modular TTO step (MSE, E = --tasks experts of `samples` points
  each, vmapped): per layer the forward row matmul, the input gradient (not the first
  layer's: the coordinates need none) and the weight gradient, a contraction over the
  samples. Their FLOPs are step_flops (tests check them against the step's jaxpr)."""
  e, dims = a.tasks, list(layer_dims(2, a.width, a.depth, 3))
  out = []
  for layer, (i, o) in enumerate(zip(dims[:-1], dims[1:])):
    name = f'dense_{layer}'
    out.append(Matmul(f'{name} forward', (e, samples, i), (e, i, o), ROWS))
    if layer:
      out.append(Matmul(f'{name} input gradient', (e, samples, o), (e, i, o), BACK))
    out.append(Matmul(f'{name} weight gradient', (e, samples, i), (e, samples, o), SAMPLES))
  return out


def matmul_timers(matmuls: list[Matmul], calls: int) -> dict[str, Callable[[], float]]:
  """A timer per matmul (ms per product, `calls` products each), each jitted alone on
  random operands shared by shape. Each product writes over the donated previous
  result, as the step's loop reuses its buffers: a fresh output would be page-faulted
  in at every call (on this VM ~5 ms for the dense_0 forward's 16 MiB, more than the
  product itself)."""
  arrays: dict[tuple[int, ...], jax.Array] = {}

  def operand(shape):
    if shape not in arrays:
      arrays[shape] = jax.random.normal(jax.random.key(len(arrays)), shape, jnp.float32)
    return arrays[shape]
  timers = {}
  for m in matmuls:
    x, y = operand(m.lhs), operand(m.rhs)
    fn = jax.jit(lambda u, v, _, d=m.dims: jax.lax.dot_general(u, v, d), donate_argnums=2)
    box = {'out': jnp.zeros(jax.eval_shape(fn, x, y, 0.0).shape, jnp.float32)}
    fn = fn.lower(x, y, box['out']).compile()

    def run(fn=fn, x=x, y=y, box=box):
      for _ in range(calls):
        box['out'] = fn(x, y, box['out'])
      _ready(box['out'])
    timers[m.name] = _timer(run, per=calls)
  return timers


def bench_tto_shapes(a: argparse.Namespace, sine: str, calls: int = 8) -> dict:
  """The modular TTO step against its own matmuls alone (the 75% goal's bound): the step,
  every matmul of tto_matmuls and a gemm timed in turn; per round the matmuls' times
  add up to one step's worth, and rates are taken from the medians over rounds."""
  s = make_setting(a, 'modular', sine)
  matmuls = tto_matmuls(a, s.episode.context_x.shape[1])
  timers = {'step': step_timer(s, a)[0], **matmul_timers(matmuls, calls)}
  timers['gemm'], n = gemm_timer(a)
  runs = interleaved_runs(timers, a.repeats)
  runs['matmuls'] = [sum(t) for t in zip(*(runs[m.name] for m in matmuls))]
  ms = {k: statistics.median(v) for k, v in runs.items()}
  flops = sum(m.flops for m in matmuls)
  rate = lambda f, t: f / t / 1e6          # FLOPs / ms -> GFLOP/s
  gemm, shapes, step = rate(2 * n**3, ms['gemm']), rate(flops, ms['matmuls']), rate(
      flops, ms['step'])
  kinds = {}
  for m in matmuls:
    kind = m.name.split(' ', 1)[1]
    f, t = kinds.get(kind, (0, 0.0))
    kinds[kind] = (f + m.flops, t + ms[m.name])
  return {'bench': 'tto_shapes', 'sine': sine, 'experts': a.tasks,
          'samples': matmuls[0].lhs[1], 'width': a.width, 'depth': a.depth,
          'matmuls': [{'name': m.name, 'lhs': list(m.lhs), 'rhs': list(m.rhs),
                       'gflop': m.flops / 1e9, 'ms': ms[m.name],
                       'gflops': rate(m.flops, ms[m.name])} for m in matmuls],
          'gflops_by_kind': {k: rate(f, t) for k, (f, t) in kinds.items()},
          'gflop': flops / 1e9, 'ms': ms['matmuls'], 'gflops': shapes,
          'step_ms': ms['step'], 'step_gflops': step, 'gemm_gflops': gemm,
          'step_fraction_of_shapes': step / shapes, 'shapes_fraction_of_gemm': shapes / gemm,
          'step_fraction_of_gemm': step / gemm, 'calls_per_timing': calls}


def _json_lines(text: str) -> list[str]:
  return [l for l in text.splitlines() if l.startswith('{')]


def _compiled_memory(compiled) -> dict:
  m = compiled.memory_analysis()
  if m is None:
    return {'peak_bytes': None}
  parts = {k: int(getattr(m, f'{k}_size_in_bytes'))
           for k in ('temp', 'argument', 'output', 'alias')}
  peak = parts['temp'] + parts['argument'] + parts['output'] - parts['alias']
  return {f'{k}_bytes': v for k, v in parts.items()} | {'peak_bytes': peak}


def _device_peak_bytes() -> Optional[int]:
  """Peak device memory of this process so far (accelerators; None on CPU)."""
  stats = jax.devices()[0].memory_stats() if jax.default_backend() != 'cpu' else None
  return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def meta_step_runner(a: argparse.Namespace, sine: str, inner_steps: int,
                     remat: str) -> tuple[Callable[[], None], Any]:
  """(a call of one second-order meta-step of `modular` (eq. 1) on --meta_batch random
  images that blocks, its state donated and carried on; the compiled executable)."""
  s = make_setting(a, 'modular', sine, inner_steps=inner_steps, remat=remat)
  optimizer = meta.outer_optimizer(base.base_config().meta)
  batch = jax.tree_util.tree_map(jnp.asarray, stack_episodes(
      [s.modality.episode(_image(a, seed)) for seed in range(a.meta_batch)]))
  box = {'state': meta.init_state(s.learner, optimizer, jax.random.key(0))}
  step = meta.make_meta_step(s.learner, optimizer).lower(box['state'], batch).compile()

  def run():
    box['state'], metrics = step(box['state'], batch)
    _ready(metrics)
  return run, step


def xla_gflop(compiled) -> float:
  """XLA's FLOP count of a compiled program (cost_analysis): a loop body counts once,
  whatever its trip count."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
  return cost.get('flops', 0) / 1e9


def meta_step_timer(a: argparse.Namespace, sine: str, inner_steps: int,
                    remat: str) -> tuple[Callable[[], float], dict]:
  """(a timer of one second-order meta-step (meta_step_runner), compiled and warmed up;
  its compiled memory and FLOPs)."""
  run, step = meta_step_runner(a, sine, inner_steps, remat)
  return _timer(run), {**_compiled_memory(step), 'gflop_xla': xla_gflop(step)}


def bench_meta(a: argparse.Namespace, sine: str, inner_steps: int, timed: bool,
               remat: str = 'step') -> dict:
  """One second-order meta-step of `modular`: planned memory and, if timed, ms."""
  timer, plan = meta_step_timer(a, sine, inner_steps, remat)
  record = {'bench': 'meta', 'inner_steps': inner_steps, 'meta_batch': a.meta_batch,
            'sine': sine, 'remat': remat, 'second_order': True,
            'memory_source': MEMORY_SOURCE, **plan, 'ms': None}
  if timed:
    record['ms'] = interleaved({'meta': timer}, a.meta_repeats)['meta']
    record['device_peak_bytes_in_use'] = _device_peak_bytes()
  return record


def run_torch_meta(a: argparse.Namespace, inner_steps: int) -> dict:
  """The PyTorch eager twin of the second-order meta-step (a subprocess, same sizes):
  its JSON line (ms per meta-step, peak RSS), or {'skipped': why}."""
  if not torch_available() or not os.path.exists(a.torch_meta_script):
    return {'skipped': 'torch is not importable or the script is missing'}
  cmd = [sys.executable, a.torch_meta_script, '--resolution', str(a.resolution),
         '--experts', str(a.tasks), '--width', str(a.width), '--depth', str(a.depth),
         '--w0', str(a.w0), '--inner_steps', str(inner_steps), '--inner_lr', str(a.lr),
         '--batch', str(a.meta_batch), '--repeats', str(a.meta_repeats),
         '--threads', str(a.torch_threads)]
  out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_twin_env(a))
  lines = _json_lines(out.stdout)
  if out.returncode or not lines:
    return {'skipped': f'exit {out.returncode}: {out.stderr[-300:]}'}
  return json.loads(lines[-1])


def bench_meta_torch(a: argparse.Namespace, sine: str, inner_steps: int) -> dict:
  """Our meta-step (every --meta_remat policy) against the PyTorch eager twin, timed in
  turn --torch_rounds times; speed-up = median twin / median ours, and our planned
  memory over the twin's peak RSS (the whole process: an upper bound of its arrays)."""
  record = {'bench': 'meta_torch', 'script': a.torch_meta_script, 'sine': sine,
            'inner_steps': inner_steps, 'meta_batch': a.meta_batch}
  ours = {p: meta_step_timer(a, sine, inner_steps, p) for p in _csv(a.meta_remat)}
  runs, times = [], {p: [] for p in ours}
  for _ in range(a.torch_rounds):
    runs.append(run_torch_meta(a, inner_steps))
    if 'skipped' in runs[-1]:
      return record | runs[-1]
    for p, (timer, _) in ours.items():
      times[p].append(interleaved({p: timer}, a.meta_repeats)[p])
  theirs = [r['ms_per_meta_step'] for r in runs]
  rss = max(r['max_rss_mib'] for r in runs) * 2**20
  return record | {'torch': runs[0], 'torch_ms_runs': theirs,
                   'torch_ms': statistics.median(theirs), 'torch_peak_rss_bytes': rss,
                   'ours': {p: {'ms_runs': times[p], 'ms': statistics.median(times[p]),
                                'speedup_vs_torch': statistics.median(theirs)
                                / statistics.median(times[p]),
                                'memory_over_torch_rss': plan['peak_bytes'] / rss, **plan}
                            for p, (_, plan) in ours.items()}}


def bench_table6(a: argparse.Namespace, sine: str, learner: str) -> dict:
  """TTO episodes per second with the project's Table 6 measurement (compute_cost)."""
  s = make_setting(a, learner, sine)
  params = s.learner.init(jax.random.key(0))
  cost = compute_cost.tto_cost(s.learner, params, s.episode, a.table6_steps,
                               repeats=a.table6_repeats)
  return {'bench': 'table6', 'learner': learner, 'sine': sine, 'tasks': a.tasks,
          'steps_per_task': a.table6_steps, 'batch': 1, **cost,
          'ms_per_episode': 1e3 / cost['episodes_per_s']}


def torch_available() -> bool:
  return importlib.util.find_spec('torch') is not None


def run_torch(a: argparse.Namespace, compiled: bool = False) -> dict:
  """The PyTorch twin of the modular step (eager, or `torch.compile`d) as a subprocess on
  the same sizes: its JSON line, or {'skipped': why}."""
  if not torch_available() or not os.path.exists(a.torch_script):
    return {'skipped': 'torch is not importable or the script is missing'}
  cmd = [sys.executable, a.torch_script, '--height', str(a.resolution),
         '--width-px', str(a.resolution), '--experts', str(a.tasks), '--width', str(a.width),
         '--depth', str(a.depth), '--w0', str(a.w0), '--steps', str(a.steps),
         '--repeats', str(a.repeats), '--threads', str(a.torch_threads)]
  cmd += ['--compile'] if compiled else []
  out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_twin_env(a))
  lines = _json_lines(out.stdout)
  if out.returncode or not lines:
    return {'skipped': f'exit {out.returncode}: {out.stderr[-300:]}'}
  return json.loads(lines[-1])


def bench_torch(a: argparse.Namespace, sine: str, compiled: bool = False) -> dict:
  """Our modular step against the twin (eager or compiled), timed in turn --torch_rounds
  times (so both see the same load on a shared machine); speed-up = median twin /
  median ours."""
  record = {'bench': 'torch', 'script': a.torch_script, 'sine': sine,
            'twin': 'torch.compile' if compiled else 'eager'}
  step, _ = step_timer(make_setting(a, 'modular', sine), a)
  runs, ours = [], []
  for _ in range(a.torch_rounds):
    runs.append(run_torch(a, compiled))
    if 'skipped' in runs[-1]:
      return record | runs[-1]
    ours.append(interleaved({'step': step}, a.repeats)['step'])
  theirs = [r['ms_per_step'] for r in runs]
  return record | {'torch': runs[0], 'torch_ms_per_step_runs': theirs,
                   'jax_ms_per_step_runs': ours,
                   'torch_ms_per_step': statistics.median(theirs),
                   'jax_ms_per_step': statistics.median(ours),
                   'speedup_vs_torch': statistics.median(theirs) / statistics.median(ours)}


def _goal(name: str, value: Optional[float], target: float, higher: bool) -> dict:
  met = None if value is None else bool(value >= target if higher else value <= target)
  return {'name': name, 'value': value, 'target': ('>= ' if higher else '<= ') + str(target),
          'met': met}


def goals(tto: Optional[dict], fim: list[dict], metas: list[dict],
          torch: list[dict], meta_torch: list[dict],
          fim_shapes: Optional[dict] = None, tto_shapes: Optional[dict] = None) -> dict:
  """The targets from what was measured (value None where it was not). The TTO rate
  goal carries its measured bound (tto_shapes): the rate of the step's own matmuls alone
  as a fraction of the gemm, which the step cannot exceed."""
  peaks = {r['inner_steps']: r['peak_bytes'] for r in metas
           if r.get('peak_bytes') and r.get('remat', 'step') == 'step'}
  lo, hi = (min(peaks), max(peaks)) if len(peaks) > 1 else (None, None)
  twins = {r.get('twin'): r.get('speedup_vs_torch') for r in torch}
  diag = [r['ratio_to_mse'] for r in fim if r['fisher'] == 'diag']
  bound = (fim_shapes or {}).get('fim_over_mse_matmuls_only')
  out = [_goal('tto_speedup_vs_torch_eager', twins.get('eager'), 1.5, True),
         _goal('tto_speedup_vs_torch_compile', twins.get('torch.compile'), 1.5, True),
         _goal('tto_fraction_of_gemm', (tto or {}).get('fraction_of_gemm'), 0.75, True)
         | _tto_bound(tto_shapes),
         _fim_goal(fim),
         _goal('fim_diag_over_its_matmul_bound', diag[0] / bound if diag and bound else None,
               1.1, False),
         _goal('meta_memory_most_over_fewest_inner_steps',
               peaks[hi] / peaks[lo] if lo else None, 1.5, False) | {'inner_steps': [lo, hi]}]
  for r in meta_torch:
    best = (r.get('ours') or {}).get('step', {})
    out += [_goal(f'meta_speedup_vs_torch_eager_{r["inner_steps"]}_inner_steps',
                  best.get('speedup_vs_torch'), 2.0, True),
            _goal(f'meta_memory_over_torch_rss_{r["inner_steps"]}_inner_steps',
                  best.get('memory_over_torch_rss'), 0.25, False)]
  return {'bench': 'goals', 'goals': out}


def _tto_bound(shapes: Optional[dict]) -> dict:
  """The TTO rate goal's bound: its matmuls' rate over the gemm's, and the step's over
  its matmuls' (both from tto_shapes, timed in turn); {} where it was not measured."""
  if not shapes:
    return {}
  return {'matmul_bound': shapes['shapes_fraction_of_gemm'],
          'fraction_of_bound': shapes['step_fraction_of_shapes'],
          'bound_source': 'tto_shapes: the step\'s matmuls alone over a gemm in turn'}


def _fim_goal(fim: list[dict]) -> dict:
  """The worst measured FIM/MSE ratio; unknown (not met) where a fisher has no value."""
  ratios = {r['fisher']: r['ratio_to_mse'] for r in fim}
  goal = _goal('fim_step_over_mse_step',
               max((v for v in ratios.values() if v is not None), default=None), 1.5, False)
  missing = [f for f, v in ratios.items() if v is None]
  if missing:
    goal |= {'unmeasured': missing, 'met': False if goal['met'] is False else None}
  return goal


def environment(a: argparse.Namespace) -> dict:
  """The machine, and glibc's malloc settings: the environment's, or the ones the bench
  set itself (process.keep_freed_memory, which the twins' subprocesses get too)."""
  return {'bench': 'env', 'backend': jax.default_backend(),
          'device': jax.devices()[0].device_kind, 'jax': jax.__version__,
          'cpus': os.cpu_count(), 'keep_freed_memory': a.kept_freed_memory,
          'malloc_env': {k: os.environ[k] for k in process.MALLOC_ENV if k in os.environ}}


def _twin_env(a: argparse.Namespace) -> Optional[dict]:
  """The twins run under the same allocator settings as our steps."""
  return os.environ | process.KEEP_FREED_MEMORY_ENV if a.kept_freed_memory else None


def run(a: argparse.Namespace) -> list[dict]:
  """Takes every measurement asked for, printing each line as soon as it is taken."""
  only, sines, records = set(_csv(a.only)), _csv(a.sines), []

  def emit(record: dict) -> dict:
    print(json.dumps(record), flush=True)
    records.append(record)
    return record

  emit(environment(a))
  with_gemm = 'gemm' in only
  if with_gemm:
    emit(bench_gemm(a))
  if 'sine' in only:
    emit(bench_sine(a))
  tto = None
  if 'tto' in only:
    for setting in ('modular', 'single'):
      for sine in sines:
        r = emit(bench_tto(a, sine, setting, with_gemm))
        tto = tto or r                      # the modular step with the first sine
  tto_shapes = emit(bench_tto_shapes(a, sines[0])) if 'tto_shapes' in only else None
  torch = [emit(bench_torch(a, sines[0], c)) for c in (False, True)] if a.torch else []
  fim = [emit(bench_fim(a, sines[0], f)) for f in _csv(a.fishers)] if 'fim' in only else []
  shapes = emit(bench_fim_shapes(a)) if fim else None
  timed = _csv(a.meta_inner_steps) if a.meta_time == 'all' else _csv(a.meta_time)
  metas, meta_torch = [], []
  if 'meta' in only:
    for n in sorted(int(n) for n in _csv(a.meta_inner_steps)):
      metas += [emit(bench_meta(a, sines[0], n, str(n) in timed, p))
                for p in _csv(a.meta_remat)]
      if a.torch and str(n) in timed:
        meta_torch.append(emit(bench_meta_torch(a, sines[0], n)))
  if 'table6' in only:
    for learner in _csv(a.table6_learners):
      emit(bench_table6(a, sines[0], learner))
  emit(goals(tto, fim, metas, torch, meta_torch, shapes, tto_shapes))
  return records


def configure(a: argparse.Namespace) -> argparse.Namespace:
  """The entry points' process settings, --keep_freed_memory as asked."""
  a.kept_freed_memory = process.configure(a.keep_freed_memory)
  return a


def main(argv: Optional[list[str]] = None) -> list[dict]:
  return run(configure(parse(argv)))


if __name__ == '__main__':
  main()
