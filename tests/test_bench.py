import pytest
import json

from mclnf_jax import bench

pytestmark = pytest.mark.slow   # the fast tier (-m "not slow") leaves this module out

TINY = ['--resolution', '8', '--width', '8', '--single_width', '8', '--depth', '3',
        '--gemm_size', '64', '--sine_size', '1024', '--sines', 'fast',
        '--fishers', 'diag', '--steps', '1', '--repeats', '1', '--meta_inner_steps', '1,2',
        '--meta_time', '1', '--meta_repeats', '1', '--table6_steps', '2',
        '--table6_repeats', '1']
KEYS = {
    'env': {'backend', 'device', 'jax', 'cpus'},
    'gemm': {'n', 'ms', 'gflops'},
    'sine': {'size', 'ms', 'grad_ms', 'speedup_vs_exact'},
    'tto': {'setting', 'learner', 'sine', 'ms_per_step', 'gflop_per_step', 'gflops',
            'gemm_gflops', 'fraction_of_gemm', 'flop_formula', 'params'},
    'fim': {'fisher', 'ms_per_step', 'ratio_to_mse', 'ratio_range'},
    'fim_shapes': {'samples', 'width', 'ms', 'contraction_over_rows', 'fim_over_mse_matmuls_only'},
    'meta': {'inner_steps', 'meta_batch', 'ms', 'peak_bytes', 'memory_source'},
    'table6': {'learner', 'tasks', 'steps_per_task', 'ms_per_episode', 'episodes_per_s'},
    'torch': {'torch', 'twin', 'torch_ms_per_step', 'jax_ms_per_step', 'speedup_vs_torch',
              'torch_ms_per_step_runs', 'jax_ms_per_step_runs'},
    'meta_torch': {'torch', 'torch_ms', 'torch_ms_runs', 'torch_peak_rss_bytes', 'ours'},
    'goals': {'goals'},
}

FAKE_TORCH = 'import json; print(json.dumps({"impl": "fake", "ms_per_step": 2.0}))\n'
FAKE_TORCH_META = ('import json, sys; print(json.dumps({"ms_per_meta_step": 8.0, '
                   '"max_rss_mib": 1024, "argv": sys.argv[1:]}))\n')


def test_tiny_run_prints_one_parsable_line_per_measurement(capsys, tmp_path, monkeypatch):
  script = tmp_path / 'twin.py'
  script.write_text(FAKE_TORCH)
  meta_script = tmp_path / 'meta_twin.py'
  meta_script.write_text(FAKE_TORCH_META)
  monkeypatch.setattr(bench, 'torch_available', lambda: True)
  records = bench.main(TINY + ['--torch', '--torch_script', str(script), '--torch_rounds', '2',
                               '--torch_meta_script', str(meta_script),
                               '--meta_remat', 'step,none'])
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
  for policy in ('step', 'none'):
    ours = twin['ours'][policy]
    assert ours['speedup_vs_torch'] == pytest.approx(8.0 / ours['ms'])
    assert ours['memory_over_torch_rss'] == pytest.approx(ours['peak_bytes'] / 2**30)
  goals = {g['name']: g for g in lines[-1]['goals']}
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
