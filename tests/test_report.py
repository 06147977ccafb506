"""Tests for mclnf_jax.report: table layout and marks, CSVs, figures, atomic writes."""

import csv
import math
import os

import numpy as np
import pytest
from PIL import Image

from mclnf_jax import report
from mclnf_jax.errors import UserError

STEPS = [1, 2, 4, 8]
# Hand-made curves whose summary is known (PSNR, higher is better):
#   method    step1  best (step)  last
#   ol        10     40 (8)       40
#   er        12     30 (4)       25
#   mol       20     35 (8)       35
#   mcl       22     45 (8)       45
#   oml       25     26 (2)       20
CURVES = {
    'mcl': {'psnr': np.array([22.0, 30.0, 40.0, 45.0])},
    'oml': {'psnr': np.array([25.0, 26.0, 24.0, 20.0])},
    'er': {'psnr': np.array([12.0, 20.0, 30.0, 25.0])},
    'mol': {'psnr': np.array([20.0, 25.0, 30.0, 35.0])},
    'ol': {'psnr': np.array([10.0, 20.0, 30.0, 40.0])},
}


def _md_rows(path):
  """The cells of each Markdown table row, separator row dropped."""
  lines = open(path, encoding='utf-8').read().strip().splitlines()
  return [[c.strip() for c in line.strip('|').split('|')]
          for line in lines if not line.startswith('|---')]


def _read_csv(path):
  with open(path, newline='', encoding='utf-8') as f:
    return list(csv.DictReader(f))


def test_summarize_finds_best_step():
  s = report.summarize(STEPS, CURVES['er']['psnr'])
  assert s == (12.0, 30.0, 4, 25.0)


def test_summarize_ties_go_to_earliest_step_and_lower_is_better():
  assert report.summarize(STEPS, [1.0, 3.0, 3.0, 2.0]).best_step == 2
  assert report.summarize(STEPS, [4.0, 1.0, 2.0, 3.0], higher_is_better=False) == (
      4.0, 1.0, 2, 3.0)


def test_summarize_is_nan_aware():
  s = report.summarize(STEPS, [np.nan, 5.0, np.nan, np.nan])
  assert s.best == 5.0 and s.best_step == 2
  assert math.isnan(s.step1) and math.isnan(s.last)
  s = report.summarize(STEPS, [np.nan] * 4)
  assert math.isnan(s.best) and s.best_step is None


def test_summarize_rejects_wrong_length():
  with pytest.raises(UserError, match='one value per'):
    report.summarize(STEPS, [1.0, 2.0])


def test_table_groups_order_and_marks(tmp_path):
  report.write_table(tmp_path / 't', STEPS, CURVES, 'psnr')
  rows = _md_rows(tmp_path / 't.md')
  assert rows[0] == ['Metric (PSNR)', 'steps per task', 'Step 1', 'Best (step)', 'Step 8']
  body = rows[1:]
  assert [r[:2] for r in body] == [
      ['OL', 'OL'], ['CL', 'ER'], ['MOL', 'MOL'], ['MCL', 'OML'], ['', 'Ours (mod)']]
  by_method = {r[1]: r[2:] for r in body}
  # Step 1: oml 25 best, mcl 22 second.
  assert by_method['OML'][0] == '**25.00**'
  assert by_method['Ours (mod)'][0] == '<u>22.00</u>'
  # Best: mcl 45 best, ol 40 second; last: the same.
  assert by_method['Ours (mod)'][1:] == ['**45.00 (8)**', '**45.00**']
  assert by_method['OL'][1:] == ['<u>40.00 (8)</u>', '<u>40.00</u>']
  assert by_method['ER'] == ['12.00', '30.00 (4)', '25.00']


def test_table_with_datasets_and_nan(tmp_path):
  other = {'mcl': {'psnr': np.full(4, np.nan)},
           'mcl_fim': {'psnr': np.array([1.0, 2.0, 3.0, 2.5])},
           'learned_init': {'psnr': np.array([0.5, 0.5, 0.5, 0.5])}}
  report.write_table(tmp_path / 't', STEPS, None, 'psnr',
                     datasets={'CelebA': CURVES, 'FFHQ': other})
  rows = _md_rows(tmp_path / 't.md')
  assert rows[0][:6] == ['Dataset', '', 'CelebA', '', '', 'FFHQ']
  assert len(rows[1]) == 2 + 2 * 3
  by_method = {r[1]: r[2:] for r in rows[2:]}
  assert list(by_method)[-3:] == ['Ours (mod)', 'Ours (MIM)', 'learned_init']
  assert by_method['Ours (mod)'][3:] == ['n/a', 'n/a', 'n/a']  # NaN curve.
  assert by_method['OL'][3:] == ['n/a', 'n/a', 'n/a']  # absent from FFHQ.
  assert by_method['Ours (MIM)'][3:] == ['**1.00**', '**3.00 (4)**', '**2.50**']
  assert by_method['learned_init'][3:] == ['<u>0.50</u>', '<u>0.50 (1)</u>', '<u>0.50</u>']
  assert rows[-1][0] == 'Other'


def test_table_csv_parses_back(tmp_path):
  report.write_table(tmp_path / 't', STEPS, CURVES, 'psnr')
  rows = _read_csv(tmp_path / 't.csv')
  assert [r['method'] for r in rows] == ['ol', 'er', 'mol', 'oml', 'mcl']
  er = rows[1]
  assert er['group'] == 'CL' and er['display'] == 'ER'
  assert (float(er['step1']), float(er['best']), int(er['best_step']),
          float(er['last'])) == (12.0, 30.0, 4, 25.0)


def test_table_csv_nan_round_trip(tmp_path):
  report.write_table(tmp_path / 't', STEPS, {'cl': {'ssim': [np.nan] * 4}}, 'ssim')
  (row,) = _read_csv(tmp_path / 't.csv')
  assert math.isnan(float(row['best'])) and row['best_step'] == ''
  assert _md_rows(tmp_path / 't.md')[1] == ['CL', 'CL', 'n/a', 'n/a', 'n/a']


def test_table_errors_name_the_problem(tmp_path):
  with pytest.raises(UserError, match='no method has metric'):
    report.write_table(tmp_path / 't', STEPS, CURVES, 'pesq')
  with pytest.raises(UserError, match='exactly one'):
    report.write_table(tmp_path / 't', STEPS, None, 'psnr')
  with pytest.raises(UserError, match='one value per'):
    report.write_table(tmp_path / 't', [1, 2], CURVES, 'psnr')


def test_curves_csv_long_format(tmp_path):
  curves = {'mcl': {'psnr': CURVES['mcl']['psnr'], 'ssim': np.array([0.1, 0.2, np.nan, 0.4])}}
  report.write_curves_csv(tmp_path / 'c.csv', STEPS, None,
                          datasets={'CelebA': curves, 'FFHQ': {'ol': CURVES['ol']}})
  rows = _read_csv(tmp_path / 'c.csv')
  assert len(rows) == 3 * len(STEPS)
  assert rows[0] == {'dataset': 'CelebA', 'method': 'mcl', 'metric': 'psnr',
                     'step': '1', 'value': '22.0'}
  ssim = [float(r['value']) for r in rows if r['metric'] == 'ssim']
  np.testing.assert_array_equal(ssim, [0.1, 0.2, np.nan, 0.4])
  assert rows[-1]['dataset'] == 'FFHQ' and int(rows[-1]['step']) == 8


def _assert_png(path, min_width, min_height):
  with Image.open(path) as im:
    im.load()
    assert im.format == 'PNG'
    assert im.width >= min_width and im.height >= min_height
    assert np.asarray(im.convert('L')).std() > 5  # not a blank canvas.


def test_plot_curves_writes_png(tmp_path):
  report.plot_curves(tmp_path / 'p.png', STEPS, CURVES, 'psnr')
  _assert_png(tmp_path / 'p.png', 300, 200)
  report.plot_curves(tmp_path / 'q.png', STEPS, None, 'psnr',
                     datasets={'A': CURVES, 'B': {'mcl_fim': CURVES['mcl']}})
  _assert_png(tmp_path / 'q.png', 600, 200)


def test_image_grid_single_and_rows(tmp_path):
  rng = np.random.default_rng(0)
  gt = rng.uniform(size=(16, 16, 3))
  recons = {'mcl': gt * 0.9, 'ol': np.clip(gt + 0.1, 0, 1)}
  report.image_grid(tmp_path / 'g.png', gt, recons, {'mcl': 30.1, 'ol': 20.0})
  _assert_png(tmp_path / 'g.png', 300, 150)
  report.image_grid(tmp_path / 'h.png', [gt, gt[..., :1]],
                    [recons, {'mcl': gt[..., 0]}], [{'mcl': 30.1}, {}])
  _assert_png(tmp_path / 'h.png', 300, 300)
  with pytest.raises(UserError, match='one of each per row'):
    report.image_grid(tmp_path / 'x.png', [gt, gt], [recons], None)


def test_compute_table(tmp_path):
  rows = [
      report.ComputeRow('mcl', 201230, 787.0, 68.27, 38.1),
      {'method': 'ol', 'parameters': 198910, 'peak_memory_mib': float('nan'),
       'tto_speed': 65.51, 'metric_value': 25.18},
  ]
  report.write_compute_table(tmp_path / 'c', rows)
  md = _md_rows(tmp_path / 'c.md')
  assert md[0][0] == 'Category' and md[0][-1] == 'PSNR (↑)'
  assert md[1] == ['Offline Learning', 'OL', '198.91K', 'n/a', '65.51 ep/s', '25.18']
  assert md[2] == ['Meta-Continual Learning', 'Ours (mod)', '201.23K', '787 MiB',
                   '68.27 ep/s', '38.10']
  parsed = _read_csv(tmp_path / 'c.csv')
  assert [r['method'] for r in parsed] == ['ol', 'mcl']
  assert int(parsed[1]['parameters']) == 201230 and float(parsed[1]['psnr']) == 38.1
  with pytest.raises(UserError, match='row keys'):
    report.write_compute_table(tmp_path / 'c', [{'method': 'ol'}])


def test_writes_are_atomic(tmp_path, monkeypatch):
  report.write_table(tmp_path / 't', STEPS, CURVES, 'psnr')
  report.plot_curves(tmp_path / 'p.png', STEPS, CURVES, 'psnr')
  assert sorted(os.listdir(tmp_path)) == ['p.png', 't.csv', 't.md']
  before = (tmp_path / 't.csv').read_text(encoding='utf-8')

  class CrashingWriter:
    """Writes part of a row, then fails as a full disk or a kill would."""

    def __init__(self, f, **_):
      self.f = f

    def writerow(self, _):
      self.f.write('dataset,gro')
      raise OSError('disk full')

  monkeypatch.setattr(csv, 'writer', CrashingWriter)  # the one CSV writer, files.write_csv
  with pytest.raises(OSError):
    report.write_table(tmp_path / 't', STEPS, CURVES, 'psnr')
  with pytest.raises(OSError):
    report.write_curves_csv(tmp_path / 'new.csv', STEPS, CURVES)
  assert sorted(os.listdir(tmp_path)) == ['p.png', 't.csv', 't.md']
  assert (tmp_path / 't.csv').read_text(encoding='utf-8') == before
