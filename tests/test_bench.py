import json
import os

import pytest

from mclnf_jax import bench

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

TINY = ['--resolution', '8', '--width', '8', '--single_width', '8', '--depth', '3',
        '--gemm_size', '64', '--sine_size', '1024', '--sines', 'fast',
        '--fishers', 'diag', '--steps', '1', '--repeats', '1', '--meta_inner_steps', '1,2',
        '--meta_time', '1', '--meta_repeats', '1', '--table6_steps', '2',
        '--table6_repeats', '1']
KEYS = {
    'env': {'backend', 'device', 'jax', 'cpus', 'keep_freed_memory', 'malloc_env'},
    'gemm': {'n', 'ms', 'gflops'},
    'sine': {'size', 'ms', 'grad_ms', 'speedup_vs_exact'},
    'tto': {'setting', 'learner', 'sine', 'ms_per_step', 'gflop_per_step', 'gflops',
            'gemm_gflops', 'fraction_of_gemm', 'flop_formula', 'params'},
    'fim': {'fisher', 'ms_per_step', 'ratio_to_mse', 'ratio_range'},
    'fim_shapes': {'samples', 'width', 'ms', 'contraction_over_rows', 'fim_over_mse_matmuls_only'},
    'tto_shapes': {'matmuls', 'gflop', 'ms', 'gflops', 'step_ms', 'step_fraction_of_shapes',
                   'shapes_fraction_of_gemm', 'gemm_gflops', 'gflops_by_kind'},
    'meta': {'inner_steps', 'meta_batch', 'ms', 'peak_bytes', 'memory_source'},
    'table6': {'learner', 'tasks', 'steps_per_task', 'ms_per_episode', 'episodes_per_s'},
    'torch': {'torch', 'twin', 'torch_ms_per_step', 'jax_ms_per_step', 'speedup_vs_torch',
              'torch_ms_per_step_runs', 'jax_ms_per_step_runs'},
    'meta_torch': {'torch', 'torch_ms', 'torch_ms_runs', 'torch_peak_rss_bytes', 'ours'},
    'goals': {'goals'},
}

FAKE_TORCH = 'import json; print(json.dumps({"impl": "fake", "ms_per_step": 2.0}))\n'
FAKE_TORCH_META = ('import json, os, sys; print(json.dumps({"ms_per_meta_step": 8.0, '
                   '"max_rss_mib": 1024, "argv": sys.argv[1:], '
                   '"mmap_max": os.environ.get("MALLOC_MMAP_MAX_")}))\n')


def test_tiny_run_prints_one_parsable_line_per_measurement(capsys, tmp_path, monkeypatch):
  script = tmp_path / 'twin.py'
  script.write_text(FAKE_TORCH)
  meta_script = tmp_path / 'meta_twin.py'
  meta_script.write_text(FAKE_TORCH_META)
  monkeypatch.setattr(bench, 'torch_available', lambda: True)
  records = bench.main(TINY + ['--torch', '--torch_script', str(script), '--torch_rounds', '2',
                               '--torch_meta_script', str(meta_script),
                               '--meta_remat', 'step,none', '--no-keep_freed_memory'])
  lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
  assert lines == records
  kinds = [r['bench'] for r in lines]
  assert kinds.count('tto') == 2 and kinds.count('meta') == 4     # 2 step counts x 2 remats
  assert kinds.count('torch') == 2 and kinds.count('meta_torch') == 1   # eager, compiled
  assert set(kinds) == set(KEYS)
  for r in lines:
    assert KEYS[r['bench']] <= set(r), r
  torch = next(r for r in lines if r['bench'] == 'torch')
  assert torch['torch_ms_per_step_runs'] == [2.0, 2.0]   # in turn with our step
  assert len(torch['jax_ms_per_step_runs']) == 2
  assert [r['twin'] for r in lines if r['bench'] == 'torch'] == ['eager', 'torch.compile']
  metas = [r for r in lines if r['bench'] == 'meta']
  assert [(r['inner_steps'], r['remat']) for r in metas] == [
      (1, 'step'), (1, 'none'), (2, 'step'), (2, 'none')]
  assert metas[0]['ms'] > 0 and metas[2]['ms'] is None
  twin = next(r for r in lines if r['bench'] == 'meta_torch')
  assert twin['torch_ms_runs'] == [8.0, 8.0] and twin['inner_steps'] == 1
  argv = twin['torch']['argv']               # the twin gets our sizes
  assert argv[argv.index('--resolution') + 1] == '8'
  assert argv[argv.index('--inner_steps') + 1] == '1'
  assert lines[0]['keep_freed_memory'] is False   # asked off: the twin runs as we do
  assert twin['torch']['mmap_max'] == lines[0]['malloc_env'].get('MALLOC_MMAP_MAX_')
  for policy in ('step', 'none'):
    ours = twin['ours'][policy]
    assert ours['speedup_vs_torch'] == pytest.approx(8.0 / ours['ms'])
    assert ours['memory_over_torch_rss'] == pytest.approx(ours['peak_bytes'] / 2**30)
  goals = {g['name']: g for g in lines[-1]['goals']}
  shapes = next(r for r in lines if r['bench'] == 'tto_shapes')
  assert goals['tto_fraction_of_gemm']['matmul_bound'] == shapes['shapes_fraction_of_gemm']
  assert set(goals) == {'tto_speedup_vs_torch_eager', 'tto_speedup_vs_torch_compile',
                        'tto_fraction_of_gemm', 'fim_step_over_mse_step',
                        'fim_diag_over_its_matmul_bound',
                        'meta_memory_most_over_fewest_inner_steps',
                        'meta_speedup_vs_torch_eager_1_inner_steps',
                        'meta_memory_over_torch_rss_1_inner_steps'}
  assert goals['meta_memory_most_over_fewest_inner_steps']['inner_steps'] == [1, 2]
  assert all(isinstance(g['met'], bool) for g in goals.values())


def test_flop_count_of_the_paper_settings():
  # 4 experts of 5 x 128 on 32400 pixels; the single 5 x 256 network.
  assert bench.step_flops([2, 128, 128, 128, 128, 3], 32400) == 9_662_976_000
  assert bench.step_flops([2, 256, 256, 256, 256, 3], 32400) == 38_436_249_600


def test_goals_report_missing_values_as_unknown():
  fim = [{'fisher': 'diag', 'ratio_to_mse': 1.2}, {'fisher': 'kfac', 'ratio_to_mse': None}]
  metas = [{'inner_steps': 4, 'peak_bytes': 100}, {'inner_steps': 32, 'peak_bytes': 140}]
  goals = {g['name']: g for g in bench.goals(None, fim, metas, [], [])['goals']}
  assert goals['tto_speedup_vs_torch_eager']['met'] is None
  assert goals['fim_step_over_mse_step'] == {
      'name': 'fim_step_over_mse_step', 'value': 1.2, 'target': '<= 1.5', 'met': None,
      'unmeasured': ['kfac']}
  fim[1]['ratio_to_mse'] = 1.7
  assert bench.goals(None, fim, metas, [], [])['goals'][3]['met'] is False
  memory = goals['meta_memory_most_over_fewest_inner_steps']
  assert (memory['value'], memory['met'], memory['inner_steps']) == (1.4, True, [4, 32])
  unmeasured = bench.goals(None, fim, metas[:1], [], [])['goals'][5]
  assert (unmeasured['value'], unmeasured['met']) == (None, None)


def test_fim_shapes_bound_counts_the_extra_matmuls(monkeypatch):
  monkeypatch.setattr(bench, 'interleaved',
                      lambda timers, rounds: {k: {'rows': 1.0, 'contraction': 2.0}[k]
                                              for k in timers})
  r = bench.bench_fim_shapes(bench.parse(TINY), calls=1)
  assert (r['samples'], r['width']) == (8 * 8 // 4, 8)   # one expert's strip of 4
  assert r['fim_over_mse_matmuls_only'] == (3 * 1 + 2 * 2) / (2 * 1 + 2)


def test_tto_shapes_are_the_matmuls_of_the_step():
  """tto_matmuls against every dot of the compiled step (what XLA kept of its jaxpr)."""
  from launch import profile_meta as pm
  a = bench.parse(TINY)
  s = bench.make_setting(a, 'modular', 'fast')
  _, compiled, _ = bench.step_runner(s, a)
  _, ops = pm.parse_hlo(compiled.as_text())
  sizes = [pm.dot_sizes(ops, op) for op in ops.values() if op.opcode == 'dot']
  step = sorted((b, k, tuple(sorted((m, n)))) for b, k, m, n in sizes)
  ours = bench.tto_matmuls(a, s.episode.context_x.shape[1])
  assert sorted(bench.matmul_form(m) for m in ours) == step
  assert len(ours) == 3 * 3 - 1                # depth 3: no input gradient for layer 0
  assert sum(m.flops for m in ours) == bench.step_flops([2, 8, 8, 3], 8 * 8)
  weight = [m for m in ours if m.name.endswith('weight gradient')]
  assert [m.sizes()[:2] for m in weight] == [(4, 16)] * 3     # contracted over 16 samples


def test_tto_shapes_rates_and_bound(monkeypatch):
  a = bench.parse(TINY)
  calls = []

  def fake_runs(timers, rounds):
    calls.append(list(timers))
    return {k: [{'step': 2.0, 'gemm': 1.0}.get(k, 0.25)] * rounds for k in timers}
  monkeypatch.setattr(bench, 'interleaved_runs', fake_runs)
  r = bench.bench_tto_shapes(a, 'fast', calls=1)
  assert calls[0][0] == 'step' and calls[0][-1] == 'gemm'    # all timed in one loop
  assert len(r['matmuls']) == 8 and r['ms'] == 8 * 0.25
  assert r['step_fraction_of_shapes'] == pytest.approx(8 * 0.25 / 2.0)   # times inverted
  gemm = 2 * a.gemm_size**3 / 1.0 / 1e6
  assert r['shapes_fraction_of_gemm'] == pytest.approx(r['gflops'] / gemm)
  assert r['gflop'] * 1e9 == bench.step_flops([2, 8, 8, 3], 64)
  goal = bench.goals({'fraction_of_gemm': 0.5}, [], [], [], [], None, r)['goals'][2]
  assert (goal['value'], goal['met']) == (0.5, False)
  assert goal['matmul_bound'] == r['shapes_fraction_of_gemm']


# ---- launch/profile_meta.py: where the meta-step's time goes ------------------------

def _dims(lhs: int, rhs: int) -> str:
  return (f'lhs_batch_dims={{0}}, lhs_contracting_dims={{{lhs}}}, rhs_batch_dims={{0}}, '
          f'rhs_contracting_dims={{{rhs}}}')


WHILE = ('metadata={op_name="jit(step)/transpose(jvp(vmap()))/while"}, '
         'backend_config={"known_trip_count":{"n":"4"}}')
BIG, WIDE, IN, THIN = ('f32[4,8192,32]{2,1,0}', 'f32[4,32,32]{2,1,0}', 'f32[4,8192,2]{2,1,0}',
                       'f32[4,2,32]{2,1,0}')
HLO = f"""HloModule jit_step, is_scheduled=true

%fused_thin (param_0: f32[4,8192,2], param_1: f32[4,2,32]) -> f32[4,8192,32] {{
  %param_0 = {IN} parameter(0)
  %param_1 = {THIN} parameter(1)
  ROOT %dot.1 = {BIG} dot(%param_0, %param_1), {_dims(2, 1)}
}}

%fused_transposing (param_0.1: f32[4,32,8192]) -> f32[4,8192,32] {{
  %param_0.1 = f32[4,32,8192]{{2,1,0}} parameter(0)
  %transpose.1 = f32[4,8192,32]{{1,2,0}} transpose(%param_0.1), dimensions={{0,2,1}}
  ROOT %sine.1 = {BIG} sine(%transpose.1)
}}

%fused_sine (param_0.2: f32[4,8192,32]) -> f32[4,8192,32] {{
  %param_0.2 = {BIG} parameter(0)
  ROOT %sine.2 = {BIG} sine(%param_0.2)
}}

%body (arg: (s32[], f32[4,8192,32])) -> (s32[], f32[4,8192,32]) {{
  %arg = (s32[], {BIG}) parameter(0)
  %gte.1 = {BIG} get-tuple-element(%arg), index=1
  %fusion.3 = {BIG} fusion(%gte.1), kind=kLoop, calls=%fused_sine
  %gte.0 = s32[] get-tuple-element(%arg), index=0
  ROOT %tuple.1 = (s32[], {BIG}) tuple(%gte.0, %fusion.3)
}}

ENTRY %main (p0: f32[4,8192,32], p1: f32[4,32,32], p2: f32[4,8192,2], p3: f32[4,2,32]) {{
  %p0 = {BIG} parameter(0)
  %p1 = {WIDE} parameter(1)
  %p2 = {IN} parameter(2)
  %p3 = {THIN} parameter(3)
  %dot.2 = {BIG} dot(%p0, %p1), {_dims(2, 1)}
  %dot.3 = {WIDE} dot(%p0, %dot.2), {_dims(1, 1)}
  %ynn_fusion.1 = {BIG} fusion(%p2, %p3), kind=kCustom, calls=%fused_thin
  %dot.4 = f32[4,32,8192]{{2,1,0}} dot(%p1, %p0), {_dims(1, 2)}
  %fusion.2 = {BIG} fusion(%dot.4), kind=kLoop, calls=%fused_transposing
  %copy.1 = {WIDE} copy(%dot.3)
  %tuple.0 = (s32[], {BIG}) tuple(%gte.9, %fusion.2)
  %while.1 = (s32[], {BIG}) while(%tuple.0), condition=%cond, body=%body, {WHILE}
  ROOT %copy.2 = {WIDE} copy(%copy.1)
}}
"""


def test_profile_sorts_hlo_instructions_into_kinds():
  from launch import profile_meta as pm
  computations, ops = pm.parse_hlo(HLO)
  kind = lambda name: pm.classify(computations, ops, ops[name])
  assert kind('dot.2') == ('matmul rows', 2 * 4 * 8192 * 32 * 32)
  assert kind('dot.3') == ('matmul contraction', 2 * 4 * 32 * 8192 * 32)
  assert kind('dot.4') == ('matmul rows', 2 * 4 * 32 * 32 * 8192)   # output transposed
  assert kind('ynn_fusion.1') == ('matmul thin', 2 * 4 * 8192 * 2 * 32)
  assert kind('fusion.2')[0] == 'elementwise, transposing'
  assert kind('fusion.3')[0] == 'elementwise'
  assert kind('copy.1')[0] == 'copy/layout'
  assert kind('while.1')[0] == 'other'
  assert pm.sections(ops) == {'body': 'loop (backward, 4 trips)'}
  out = pm.breakdown(HLO, {'fusion.3': 8.0, 'dot.2': 4.0}, {'fusion.3': 8, 'dot.2': 2}, 2.0,
                     per=2)
  assert out['sections'] == {'loop (backward, 4 trips)': {'elementwise': 4.0},
                             'entry': {'matmul rows': 2.0}}
  assert out['kinds']['matmul rows'] == {'ms': 2.0, 'calls': 1.0,
                                         'gflop': 2 * 4 * 8192 * 32 * 32 / 1e9}
  assert out['kinds']['idle']['ms'] == 1.0


def test_profile_shares_overlapping_thunks_equally():
  from launch import profile_meta as pm
  ms = 1_000_000                               # ns
  spans = [(0, 10 * ms, 'a'), (5 * ms, 15 * ms, 'b'), (20 * ms, 30 * ms, 'c')]
  shared, idle = pm.shared_time(spans)
  assert shared == pytest.approx({'a': 7.5, 'b': 7.5, 'c': 10.0})
  assert idle == pytest.approx(5.0)
  steps, extra = pm.excess({k: {'ms': 10.0, 'gflop': 4.0 if k == 'matmul rows' else 0.0}
                            for k in pm.KINDS},
                           {k: {'ms': 1.0, 'gflop': 1.0 if k == 'matmul rows' else 0.0}
                            for k in pm.KINDS})
  assert steps == 4.0 and extra['matmul rows'] == 6.0


def test_profile_of_the_tiny_meta_step(capsys, monkeypatch):
  from launch import profile_meta as pm
  twins = iter([12.0, 30.0, 8.0])        # the twins' ms, round by round
  monkeypatch.setattr(bench, 'run_torch',
                      lambda a, compiled=False: {'ms_per_step': 1.0, 'compiled': compiled})
  monkeypatch.setattr(bench, 'run_torch_meta', lambda a, n: {'ms_per_meta_step': next(twins)})
  records = pm.main(['--resolution', '8', '--width', '8', '--depth', '3', '--steps', '2',
                     '--repeats', '1', '--runs', '1', '--meta_inner_steps', '2',
                     '--torch', '--torch_rounds', '3', '--format', 'json'])
  assert [json.loads(l) for l in capsys.readouterr().out.splitlines()] == records
  tto, meta, summary = records
  # the matmul FLOPs read off the trace are the step's (bench.step_flops)
  assert sum(v['gflop'] for v in tto['kinds'].values()) * 1e9 == pytest.approx(
      bench.step_flops([2, 8, 8, 3], 64))
  assert {'loop (forward, 2 trips)', 'loop (backward, 2 trips)'} <= set(meta['sections'])
  assert 3 < summary['matmul_tto_steps_per_inner_step'] < 5     # about 4 passes a step
  assert sum(summary['excess_ms_by_kind'].values()) == pytest.approx(
      summary['traced_excess_ms'])
  assert 0 < sum(v['ms'] for v in meta['kinds'].values()) <= 1.01 * meta['traced_ms']
  assert meta['faults'] >= 0 and summary['page_faults']['meta'] == meta['faults']
  # the speed-ups over the twins, each with its matmul-only bound
  share = summary['matmul_share']['meta']
  assert share == pytest.approx(sum(meta['kinds'][k]['ms'] for k in pm.MATMULS)
                                / meta['traced_ms'])
  assert 0 < share <= 1.01
  m = summary['twins']['meta']
  assert (m['twin'], m['twin_ms_runs'], m['twin_ms']) == ('eager', [12.0, 30.0, 8.0], 12.0)
  assert len(m['ms_runs']) == 3 and m['speedup'] == pytest.approx(12.0 / m['ms'])
  assert m['speedup_if_only_matmuls'] == pytest.approx(m['speedup'] / share)
  assert summary['twins']['tto']['twin'] == 'torch.compile'
  assert 'if only our matmuls took time' in pm.table(records)
  monkeypatch.setattr(bench, 'run_torch_meta', lambda a, n: {'skipped': 'no torch'})
  a = bench.parse(['--torch_rounds', '1'])
  assert pm.against_twins(a, {}, 2, {}) == {'skipped': 'meta twin: no torch'}


def test_twins_get_our_allocator_settings(monkeypatch):
  monkeypatch.delenv('MALLOC_MMAP_MAX_', raising=False)
  a = bench.parse(TINY)
  assert bench._twin_env(a) is None                       # nothing set: the inherited env
  a.kept_freed_memory = True
  env = bench._twin_env(a)
  assert env['MALLOC_MMAP_MAX_'] == '0' and env['MALLOC_ARENA_MAX'] == '1'
  assert env['PATH'] == os.environ['PATH']                # the rest passes through
