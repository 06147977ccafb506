"""Scalars on disk: JSONL + TensorBoard events from a tiny run, and resume without duplicates."""
import json
import os

import pytest

from mclnf_jax import experiment, metric_writers
from tests import helpers


def _steps(records, name):
  return [int(s) for s, _ in metric_writers.scalars_of(records, name)]


def test_writer_resume_drops_later_steps_and_purges_events(tmp_path):
  folder = str(tmp_path)
  with metric_writers.MetricWriter(folder, 'train') as w:
    for step in range(1, 7):
      w.write(step, loss=1.0 / step, val_psnr=float('nan') if step % 2 else 20.0 + step)
  with open(metric_writers.jsonl_path(folder, 'train'), 'a') as f:
    f.write('{"step": 7, "loss"')                     # a line cut by a crash
  with metric_writers.MetricWriter(folder, 'train', start=4) as w:  # resumed at step 4
    for step in range(5, 9):
      w.write(step, loss=2.0 / step)
  records = metric_writers.read_jsonl(metric_writers.jsonl_path(folder, 'train'))
  assert [r['step'] for r in records] == list(range(1, 9))
  assert _steps(records, 'val_psnr') == [2, 4]        # NaN is left out, not written
  assert records[-1]['loss'] == 2.0 / 8
  events = metric_writers.read_events(metric_writers.tensorboard_dir(folder, 'train'))
  assert [s for s, _ in events['train/loss']] == list(range(1, 9))
  assert dict(events['train/loss'])[6] == pytest.approx(2.0 / 6)   # the resumed run's
  raw = metric_writers.read_events(metric_writers.tensorboard_dir(folder, 'train'),
                                   purge=False)
  assert len(raw['train/loss']) == 6 + 4              # append-only files keep both copies


@pytest.mark.slow
def test_tiny_run_writes_jsonl_and_events_and_resume_does_not_duplicate(tmp_path,
                                                                        monkeypatch):
  config = helpers.tiny_config('ol,modular')
  config.data.update(name='embedded', root=str(tmp_path / 'tfds'), resolution=12)
  config.meta.update(steps=6, log_every=1, val_every=2, save_every=2)
  workdir = str(tmp_path / 'work')
  real_write = metric_writers.MetricWriter.write

  def crash_after_step_3(self, step, **scalars):   # saved at 2, logged 3, then killed
    real_write(self, step, **scalars)
    if self.run == 'train' and step == 3:
      raise KeyboardInterrupt
  monkeypatch.setattr(metric_writers.MetricWriter, 'write', crash_after_step_3)
  with pytest.raises(KeyboardInterrupt):
    experiment.run(config, workdir, 'train')
  folder = os.path.join(workdir, 'modular')
  first = metric_writers.read_jsonl(metric_writers.jsonl_path(folder, 'train'))
  assert _steps(first, 'loss') == [1, 2, 3]
  monkeypatch.setattr(metric_writers.MetricWriter, 'write', real_write)
  experiment.run(config, workdir, 'train_and_eval')

  records = metric_writers.read_jsonl(metric_writers.jsonl_path(folder, 'train'))
  assert _steps(records, 'loss') == [1, 2, 3, 4, 5, 6]
  assert _steps(records, 'val_psnr') == [2, 4, 6]
  assert {'grad_norm', 'rate', 'param_norm', 'val_mse'} <= set().union(*records)
  events = metric_writers.read_events(metric_writers.tensorboard_dir(folder, 'train'))
  assert [s for s, _ in events['train/loss']] == [1, 2, 3, 4, 5, 6]
  assert [s for s, _ in events['train/val_psnr']] == [2, 4, 6]
  for name in ('ol', 'modular'):                     # evaluation: one record per step k
    learner_folder = os.path.join(workdir, name)
    evals = metric_writers.read_jsonl(metric_writers.jsonl_path(learner_folder, 'eval'))
    assert _steps(evals, 'psnr') == [1, 2, 4] and _steps(evals, 'ssim') == [1, 2, 4]
    events = metric_writers.read_events(metric_writers.tensorboard_dir(learner_folder,
                                                                       'eval'))
    assert [s for s, _ in events['eval/psnr']] == [1, 2, 4]
    with open(os.path.join(workdir, 'results', f'{name}.json')) as f:
      assert [r['psnr'] for r in evals] == json.load(f)['curves']['psnr']
  assert not os.path.exists(metric_writers.jsonl_path(os.path.join(workdir, 'ol'), 'train'))

  experiment.run(config, workdir, 'train_and_eval')   # finished: nothing written again
  assert metric_writers.read_jsonl(metric_writers.jsonl_path(folder, 'train')) == records
