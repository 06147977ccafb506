"""Where the second-order meta-step's time goes: `python -m launch.profile_meta`.

    python -m launch.profile_meta --meta_inner_steps 4 --meta_remat step [--runs 3]
        [--format table|json] [any size option of `python -m mclnf_jax.bench`]

Builds the bench's modular TTO step and second-order meta-step (`bench.step_runner`,
`bench.meta_step_runner`: CelebA setting by default), times both untraced in turn (wall,
CPU and system time, minor page faults per call), then traces `--runs` calls of each
with XLA:CPU's profiler (`jax.profiler.trace`). Every thunk of the trace is an HLO
instruction of the compiled program; it is sorted into a kind from the compiled HLO text:

  matmul rows         dots contracting over features (forward, input gradient)
  matmul contraction  dots contracting over the samples (weight gradients)
  matmul thin         dots with a side under 16 (first layer's 2 inputs, 3 outputs)
  elementwise         loop fusions (sines, their derivatives, updates)
  elementwise, transposing  loop fusions that read an operand transposed
  reduction           fusions with a reduce (bias gradients, losses)
  copy/layout         copies, transposes, slices (scan carries)
  other, idle         anything else; no thunk running

A thunk's time runs from its start to its completion (Eigen dots run asynchronously: they
end at their flow's `end:` event); where thunks overlap, each instant is shared equally
among those running, so the kinds add up to the traced wall time. The summary compares
the meta-step with the TTO step kind by kind, the TTO step scaled by the meta-step's
matmul FLOPs counted from the trace (loops by their trip counts; XLA's `cost_analysis`
counts a loop body once): the excess of each kind over that scaled step is where the
meta-step runs slower than its matmul work predicts.

With `--torch` the PyTorch twins (the eager second-order meta-step and the
`torch.compile` TTO step, `bench.run_torch_meta` / `bench.run_torch`) run in turn with
untraced calls of ours (`--torch_rounds` times), and each speed-up is printed beside its
bound: the speed-up if everything but the matmuls took no time (the twin's ms over our
ms times the matmul kinds' share of the traced time), what XLA:CPU's matmuls allow.
"""
import argparse
import collections
import glob
import json
import re
import resource
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
from jax.profiler import ProfileData

from mclnf_jax import bench

KINDS = ('matmul rows', 'matmul contraction', 'matmul thin', 'elementwise',
         'elementwise, transposing', 'reduction', 'copy/layout', 'other', 'idle')
CONTAINERS = ('while', 'conditional', 'call')     # thunks that run other thunks
LAYOUT = {'copy', 'transpose', 'slice', 'dynamic-slice', 'dynamic-update-slice',
          'concatenate', 'pad', 'broadcast', 'reshape', 'bitcast'}
PLUMBING = LAYOUT | {'parameter', 'constant', 'tuple', 'get-tuple-element', 'iota',
                     'convert'}
THIN = 16             # a matmul side below this is thin
BIG = 1 << 20         # elements from which a transpose inside a fusion counts

_COMPUTATION = re.compile(r'^(?:ENTRY )?%([^\s(]+) ')
_INSTRUCTION = re.compile(r'^\s+(?:ROOT )?%([^\s=]+) = (.+?) ([a-z][a-z0-9\-]*)\((.*)$')


class HloOp(NamedTuple):
  name: str
  opcode: str
  shape: str
  computation: str
  rest: str            # operands and attributes, as printed


def parse_hlo(text: str) -> tuple[dict[str, list[str]], dict[str, HloOp]]:
  """({computation: its instruction names}, {instruction: HloOp}) of compiled HLO text."""
  computations, ops, current = {}, {}, None
  for line in text.splitlines():
    header = _COMPUTATION.match(line)
    if header and line.rstrip().endswith('{'):
      current = header.group(1)
      computations[current] = []
      continue
    m = _INSTRUCTION.match(line)
    if m and current:
      name, shape, opcode, rest = m.groups()
      ops[name] = HloOp(name, opcode, shape, current, rest)
      computations[current].append(name)
  return computations, ops


def _dims(shape: str) -> list[int]:
  m = re.match(r'\w+\[([\d,]*)\]', shape)
  return [int(d) for d in m.group(1).split(',') if d] if m else []


def _attr(rest: str, key: str) -> list[int]:
  m = re.search(key + r'=\{([\d,]*)\}', rest)
  return [int(d) for d in m.group(1).split(',') if d] if m else []


def dot_sizes(ops: dict[str, HloOp], dot: HloOp) -> tuple[int, int, int, int]:
  """(B, K, M, N) of an HLO dot: batch, contraction, lhs and rhs free sizes."""
  lhs = _dims(ops[re.match(r'%([^\s,)]+)', dot.rest).group(1)].shape)
  b = int(np.prod([lhs[i] for i in _attr(dot.rest, 'lhs_batch_dims')]))
  k = int(np.prod([lhs[i] for i in _attr(dot.rest, 'lhs_contracting_dims')]))
  m = int(np.prod(lhs)) // (b * k)
  return b, k, m, int(np.prod(_dims(dot.shape))) // (b * m)


def _matmul_kind(b_k_m_n: tuple[int, int, int, int]) -> str:
  _, k, m, n = b_k_m_n
  if min(k, m, n) < THIN:
    return 'matmul thin'
  return 'matmul contraction' if k > max(m, n) else 'matmul rows'


def classify(computations: dict[str, list[str]], ops: dict[str, HloOp],
             op: HloOp) -> tuple[str, int]:
  """(kind, FLOPs) of one thunk-level instruction."""
  if op.opcode == 'dot':
    sizes = dot_sizes(ops, op)
    return _matmul_kind(sizes), 2 * int(np.prod(sizes))
  if op.opcode in CONTAINERS:
    return 'other', 0
  if op.opcode != 'fusion':
    return {'reduce': 'reduction'}.get(op.opcode,
                                       'copy/layout' if op.opcode in LAYOUT else 'other'), 0
  inner = [ops[n] for n in computations.get(_called(op), [])]
  dots = [o for o in inner if o.opcode == 'dot']
  if dots:
    sizes = dot_sizes(ops, dots[0])
    return _matmul_kind(sizes), 2 * int(np.prod(sizes))
  opcodes = {o.opcode for o in inner}
  if 'reduce' in opcodes:
    return 'reduction', 0
  if opcodes <= PLUMBING:
    return 'copy/layout', 0
  if any(o.opcode == 'transpose' and np.prod(_dims(o.shape)) >= BIG for o in inner):
    return 'elementwise, transposing', 0
  return 'elementwise', 0


def _called(op: HloOp) -> Optional[str]:
  m = re.search(r'calls=%([^\s,}]+)', op.rest)
  return m.group(1) if m else None


def sections(ops: dict[str, HloOp]) -> dict[str, str]:
  """{loop body computation: 'loop (forward|backward, n trips)'}; the rest is 'entry'.
  A loop is backward when JAX named it inside a transpose (the meta-gradient's)."""
  out = {}
  for op in ops.values():
    if op.opcode != 'while':
      continue
    body = re.search(r'body=%([^\s,}]+)', op.rest).group(1)
    name = re.search(r'op_name="([^"]*)"', op.rest)
    trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', op.rest)
    way = 'backward' if name and 'transpose(' in name.group(1) else 'forward'
    out[body] = f'loop ({way}, {trips.group(1) if trips else "?"} trips)'
  return out


# ---- the trace ---------------------------------------------------------------------


def thunk_spans(data: ProfileData, module: str) -> list[tuple[int, int, str]]:
  """(start ns, completion ns, instruction) of every thunk of `module` in a trace; an
  asynchronous thunk completes at the `end:` event of its flow."""
  starts, ends = {}, {}
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if 'hlo_op' in stats and stats.get('hlo_module', module) == module:
          key = stats.get('_p', (plane.name, line.name, event.start_ns))
          starts[key] = (event.start_ns, event.end_ns, stats['hlo_op'])
        elif event.name.startswith('end: ') and '_c' in stats:
          ends[stats['_c']] = event.start_ns
  return [(s, max(e, ends.get(k, e)), name) for k, (s, e, name) in starts.items()]


def shared_time(spans: list[tuple[int, int, str]]) -> tuple[dict[str, float], float]:
  """({instruction: ms}, idle ms): each instant of the traced span shared equally among
  the thunks running then, so the times add up to the wall time less the idle time."""
  edges = sorted([(s, 1, n) for s, _, n in spans] + [(e, -1, n) for _, e, n in spans])
  running, ms, idle, last = collections.Counter(), collections.Counter(), 0.0, None
  for t, step, name in edges:
    if last is not None and t > last:
      total = sum(running.values())
      for n, c in running.items():
        ms[n] += (t - last) * c / total / 1e6
      idle += 0.0 if total else (t - last) / 1e6
    running[name] += step
    if not running[name]:
      del running[name]
    last = t
  return dict(ms), idle


def trace(run: Callable[[], None], runs: int, module: str,
          containers: set[str]) -> tuple[dict, dict, float, float]:
  """({instruction: ms}, {instruction: thunk calls}, idle ms, wall ms) of `runs` calls;
  the `containers` (loops, conditionals) take no share of the time they run others in."""
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder):
      t0 = time.perf_counter()
      for _ in range(runs):
        run()
      wall = (time.perf_counter() - t0) * 1e3
    data = ProfileData.from_file(glob.glob(f'{folder}/**/*.xplane.pb', recursive=True)[0])
  spans = thunk_spans(data, module)
  ms, idle = shared_time([x for x in spans if x[2] not in containers])
  return ms, collections.Counter(n for _, _, n in spans), idle, wall


def breakdown(text: str, ms: dict[str, float], calls: dict[str, int], idle: float,
              per: float) -> dict:
  """Time, thunk calls and matmul FLOPs per kind (and ms per section), divided by `per`."""
  computations, ops = parse_hlo(text)
  loops = sections(ops)
  kinds = {k: {'ms': 0.0, 'calls': 0.0, 'gflop': 0.0} for k in KINDS}
  by_section = collections.defaultdict(lambda: collections.Counter())
  for name, t in ms.items():
    op = ops.get(name)
    kind, flops = classify(computations, ops, op) if op else ('other', 0)
    kinds[kind]['ms'] += t / per
    kinds[kind]['calls'] += calls.get(name, 0) / per
    kinds[kind]['gflop'] += flops * calls.get(name, 0) / per / 1e9
    by_section[loops.get(op.computation, 'entry') if op else 'entry'][kind] += t / per
  kinds['idle']['ms'] = idle / per
  return {'kinds': kinds, 'sections': {s: dict(c) for s, c in by_section.items()}}


def _module_name(text: str) -> str:
  return re.match(r'HloModule ([^\s,]+)', text).group(1)


def untraced(runs: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict]:
  """Per call of each run, called in turn: wall ms (median), and the process's CPU
  (user, system) ms and minor page faults (means; all threads of the process)."""
  out = {k: collections.defaultdict(list) for k in runs}
  for _ in range(rounds):
    for k, run in runs.items():
      r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
      run()
      t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
      out[k]['ms'].append((t1 - t0) * 1e3)
      out[k]['user_ms'].append((r1.ru_utime - r0.ru_utime) * 1e3)
      out[k]['sys_ms'].append((r1.ru_stime - r0.ru_stime) * 1e3)
      out[k]['faults'].append(r1.ru_minflt - r0.ru_minflt)
  return {k: {'ms': statistics.median(v['ms']), 'ms_runs': v['ms'],
              **{m: statistics.mean(v[m]) for m in ('user_ms', 'sys_ms', 'faults')}}
          for k, v in out.items()}


def program(run: Callable[[], None], compiled: Any, runs: int, per: float) -> dict:
  """The traced breakdown of one compiled program, per `per` (calls x steps)."""
  text = compiled.as_text()
  containers = {op.name for op in parse_hlo(text)[1].values() if op.opcode in CONTAINERS}
  ms, calls, idle, wall = trace(run, runs, _module_name(text), containers)
  return {'traced_ms': wall / per, **breakdown(text, ms, calls, idle, per),
          'xla_gflop': bench.xla_gflop(compiled)}


def excess(meta_kinds: dict, tto_kinds: dict) -> tuple[float, dict[str, float]]:
  """(TTO steps of matmul FLOPs in the meta-step; per kind, meta ms less that many TTO
  steps' ms of the kind): what the meta-step spends beyond its matmul work's worth."""
  flops = lambda kinds: sum(v['gflop'] for v in kinds.values())
  steps = flops(meta_kinds) / flops(tto_kinds)
  return steps, {k: meta_kinds[k]['ms'] - steps * tto_kinds[k]['ms'] for k in KINDS}


MATMULS = ('matmul rows', 'matmul contraction', 'matmul thin')


def matmul_share(record: dict) -> float:
  """The matmul kinds' share of a traced program's time."""
  return sum(record['kinds'][k]['ms'] for k in MATMULS) / record['traced_ms']


def against_twins(a: argparse.Namespace, runs: dict[str, Callable[[], None]], inner: int,
                  shares: dict[str, float]) -> dict:
  """Our TTO step and meta-step against their PyTorch twins (compiled, eager), a twin run
  then an untraced round of ours, --torch_rounds times: medians, speed-ups, and each
  speed-up's bound if only our matmuls took time ({'skipped': why} without torch)."""
  theirs, ours = collections.defaultdict(list), collections.defaultdict(list)
  for _ in range(a.torch_rounds):
    twins = {'tto': bench.run_torch(a, compiled=True), 'meta': bench.run_torch_meta(a, inner)}
    for name, r in twins.items():
      if 'skipped' in r:
        return {'skipped': f'{name} twin: {r["skipped"]}'}
    theirs['tto'].append(twins['tto']['ms_per_step'])
    theirs['meta'].append(twins['meta']['ms_per_meta_step'])
    timed = untraced(runs, a.repeats)
    ours['tto'].append(timed['tto']['ms'] / a.steps)
    ours['meta'].append(timed['meta']['ms'])
  out = {}
  for name, twin in (('tto', 'torch.compile'), ('meta', 'eager')):
    t, o = statistics.median(theirs[name]), statistics.median(ours[name])
    out[name] = {'twin': twin, 'twin_ms': t, 'twin_ms_runs': theirs[name], 'ms': o,
                 'ms_runs': ours[name], 'speedup': t / o, 'matmul_ms': o * shares[name],
                 'speedup_if_only_matmuls': t / (o * shares[name])}
  return out


def profile(a: argparse.Namespace, runs: int) -> list[dict]:
  """The TTO step and the meta-step: untraced in turn, then traced; and the summary."""
  sine, inner = bench._csv(a.sines)[0], int(bench._csv(a.meta_inner_steps)[0])
  remat = bench._csv(a.meta_remat)[0]
  tto_run, tto, _ = bench.step_runner(bench.make_setting(a, 'modular', sine), a)
  meta_run, meta = bench.meta_step_runner(a, sine, inner, remat)
  for run in (tto_run, meta_run):
    run()                                                   # warm-up
  timed = untraced({'tto': tto_run, 'meta': meta_run}, a.repeats)
  records = [{'bench': 'profile', 'program': 'tto_step', 'per': 'step', 'steps_per_call':
              a.steps, 'ms': timed['tto']['ms'] / a.steps,
              **{k: timed['tto'][k] / a.steps for k in ('user_ms', 'sys_ms', 'faults')},
              **program(tto_run, tto, runs, runs * a.steps)},
             {'bench': 'profile', 'program': 'meta_step', 'per': 'meta-step',
              'inner_steps': inner, 'remat': remat, 'ms': timed['meta']['ms'],
              **{k: timed['meta'][k] for k in ('user_ms', 'sys_ms', 'faults')},
              **program(meta_run, meta, runs, runs)}]
  t, m = records
  steps, extra = excess(m['kinds'], t['kinds'])
  over = sum(extra.values())
  records.append({
      'bench': 'meta_profile', 'inner_steps': inner, 'remat': remat, 'sine': sine,
      'meta_ms': m['ms'], 'tto_ms': t['ms'],
      'tto_steps_per_inner_step': m['ms'] / t['ms'] / inner,
      'matmul_gflop': {'meta': sum(v['gflop'] for v in m['kinds'].values()),
                       'tto': sum(v['gflop'] for v in t['kinds'].values()),
                       'xla_meta': m['xla_gflop'], 'xla_tto': t['xla_gflop']},
      'matmul_tto_steps_per_inner_step': steps / inner,
      'traced_excess_ms': over, 'traced_excess_fraction': over / m['traced_ms'],
      'excess_ms_by_kind': extra,
      'page_faults': {'meta': m['faults'], 'tto_per_step': t['faults'],
                      'meta_sys_ms': m['sys_ms'], 'tto_sys_ms_per_step': t['sys_ms']},
      'matmul_share': {'meta': matmul_share(m), 'tto': matmul_share(t)}})
  if a.torch:
    records[-1]['twins'] = against_twins(a, {'tto': tto_run, 'meta': meta_run}, inner,
                                         records[-1]['matmul_share'])
  return records


def table(records: list[dict]) -> str:
  """The records as a readable breakdown (ms per meta-step / per TTO step by kind)."""
  t, m, s = records
  rows = [f'{"kind":26s} {"meta ms":>9s} {"calls":>6s} {"GFLOP/s":>8s} '
          f'{"TTO ms":>8s} {"x steps":>8s} {"excess":>8s}']
  steps = s['matmul_tto_steps_per_inner_step'] * s['inner_steps']
  for k in KINDS:
    mk, tk = m['kinds'][k], t['kinds'][k]
    rate = mk['gflop'] / mk['ms'] * 1e3 if mk['gflop'] and mk['ms'] else 0
    rows.append(f'{k:26s} {mk["ms"]:9.1f} {mk["calls"]:6.0f} {rate:8.1f} {tk["ms"]:8.2f} '
                f'{steps * tk["ms"]:8.1f} {s["excess_ms_by_kind"][k]:8.1f}')
  rows.append(f'traced: meta {m["traced_ms"]:.0f} ms, TTO {t["traced_ms"]:.1f} ms/step; '
              f'untraced: meta {m["ms"]:.0f} ms, TTO {t["ms"]:.1f} ms/step = '
              f'{s["tto_steps_per_inner_step"]:.2f} TTO steps per inner step')
  g = s['matmul_gflop']
  rows.append(f'matmul GFLOP: meta {g["meta"]:.1f} (XLA cost_analysis {g["xla_meta"]:.1f}), '
              f'TTO step {g["tto"]:.2f}: {s["matmul_tto_steps_per_inner_step"]:.2f} TTO steps '
              f'of matmuls per inner step; excess over them {s["traced_excess_ms"]:.0f} ms '
              f'({100 * s["traced_excess_fraction"]:.0f}% of the traced meta-step)')
  f = s['page_faults']
  rows.append(f'minor page faults per meta-step {f["meta"]:.0f} ({f["meta_sys_ms"]:.0f} ms '
              f'system time), per TTO step {f["tto_per_step"]:.0f} '
              f'({f["tto_sys_ms_per_step"]:.1f} ms)')
  share = s['matmul_share']
  rows.append(f'matmuls: {100 * share["meta"]:.0f}% of the traced meta-step, '
              f'{100 * share["tto"]:.0f}% of the traced TTO step')
  for name, r in s.get('twins', {}).items():
    if name == 'skipped':
      rows.append(f'twins skipped: {r}')
      continue
    rows.append(f'{name} vs the {r["twin"]} twin: {r["ms"]:.1f} vs {r["twin_ms"]:.1f} ms '
                f'(runs {", ".join(f"{v:.0f}" for v in r["twin_ms_runs"])}): '
                f'{r["speedup"]:.2f}x; if only our matmuls took time '
                f'({r["matmul_ms"]:.1f} ms): {r["speedup_if_only_matmuls"]:.2f}x')
  for name, part in m['sections'].items():
    rows.append(f'  {name}: ' + ', '.join(f'{k} {v:.0f}' for k, v in sorted(
        part.items(), key=lambda kv: -kv[1]) if v >= 0.5) + ' ms')
  return '\n'.join(rows)


def main(argv: Optional[list[str]] = None) -> list[dict]:
  p = argparse.ArgumentParser(prog='python -m launch.profile_meta',
                              description=__doc__.split('\n', 1)[0])
  p.add_argument('--runs', type=int, default=3, help='traced calls of each program')
  p.add_argument('--format', choices=('table', 'json'), default='table')
  own, rest = p.parse_known_args(argv)
  a = bench.configure(bench.parse(rest))
  records = profile(a, own.runs)
  env = bench.environment(a)
  records[-1] |= {k: env[k] for k in ('keep_freed_memory', 'malloc_env')}
  if own.format == 'json':
    for r in records:
      print(json.dumps(r), flush=True)
  else:
    print(table(records), flush=True)
  return records


if __name__ == '__main__':
  main(sys.argv[1:])
