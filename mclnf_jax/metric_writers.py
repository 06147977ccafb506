"""Scalars on disk: a JSONL file and TensorBoard event files per run, no TensorFlow.

Each learner folder of a workdir gets, per run kind (`train`: meta-training, `eval`: the
evaluation protocol)::

  <workdir>/<learner>/metrics.jsonl          meta-training, one JSON object per step
  <workdir>/<learner>/eval_metrics.jsonl     evaluation, one object per test-time step k
  <workdir>/<learner>/tensorboard/train/     TensorBoard events, tags `train/<name>`
  <workdir>/<learner>/tensorboard/eval/      tags `eval/<name>` (x axis: steps per task)

A JSONL line is `{"step": s, "time": unix seconds, "<name>": value, ...}` (read it with
`pandas.read_json(path, lines=True)` or `read_jsonl`). Events are written by
tensorboardX (protobuf only; clu's writer needs TensorFlow; it comes with the `[data]`
extra, and without it only the JSONL files are written); `tensorboard --logdir WORKDIR`
shows every learner's runs.

Resuming. A writer opened at `start` (the step a resumed run continues from, 0 for a
fresh one) first drops the JSONL lines of steps after `start` (rewritten atomically;
a line cut by a crash is dropped too), and opens a new event file whose first event
asks TensorBoard to hide the older files' events at steps > `start` (TensorBoard's
`purge_step`). Steps a crashed run had logged after its last checkpoint are run again
(exactly: meta-batches depend on (seed, step) only) and written again, once on screen.
Raw event files still hold the old copies (event files are append-only); TensorBoard
and `read_events(..., purge=True)` do not show them.
"""
from __future__ import annotations

import json
import math
import os
import struct
import time
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import numpy as np
from absl import logging

from mclnf_jax import files

JSONL = {'train': 'metrics.jsonl', 'eval': 'eval_metrics.jsonl'}


def jsonl_path(folder: str, run: str) -> str:
  return os.path.join(folder, JSONL.get(run, f'{run}_metrics.jsonl'))


def tensorboard_dir(folder: str, run: str) -> str:
  return os.path.join(folder, 'tensorboard', run)


def read_jsonl(path: str) -> list[dict]:
  """The complete records of a JSONL file (a line cut short by a crash is skipped)."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(record, dict) and 'step' in record:
        out.append(record)
  return out


class MetricWriter:
  """Writes scalars of one run (`run`: 'train' or 'eval') of a learner folder.

  `write(step, **scalars)` appends one JSONL line and one event per scalar (non-finite
  values are left out, as are None); use as a context manager or call `close()`.
  """

  def __init__(self, folder: str, run: str, start: int = 0):
    self.run = run
    self.path = jsonl_path(folder, run)
    kept = [r for r in read_jsonl(self.path) if r['step'] <= start]
    if os.path.exists(self.path):
      files.write_text(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
    os.makedirs(folder, exist_ok=True)
    self._jsonl = open(self.path, 'a', encoding='utf-8')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    except ImportError:                      # core install: the JSONL file only
      logging.warning('tensorboardX is not installed (pip install tensorboardX, or the '
                      '[data] extra): %s gets no TensorBoard events', folder)
      self._events = None
      return
    logdir = tensorboard_dir(folder, run)
    resumed = os.path.isdir(logdir) and any(
        'tfevents' in f for f in os.listdir(logdir))
    # tensorboardX names files by the second: a nanosecond suffix keeps two writers of
    # one second apart, in the order they were opened.
    self._events = SummaryWriter(logdir, purge_step=start + 1 if resumed else None,
                                 flush_secs=30, filename_suffix=f'.{time.time_ns()}')

  def write(self, step: int, **scalars: Optional[float]) -> None:
    values = {k: float(v) for k, v in scalars.items()
              if v is not None and math.isfinite(float(v))}
    if not values:
      return
    self._jsonl.write(json.dumps({'step': int(step), 'time': time.time(), **values}) + '\n')
    self._jsonl.flush()
    for name, value in values.items() if self._events is not None else ():
      self._events.add_scalar(f'{self.run}/{name}', value, int(step))

  def flush(self) -> None:
    self._jsonl.flush()
    if self._events is not None:
      self._events.flush()

  def close(self) -> None:
    self._jsonl.close()
    if self._events is not None:
      self._events.close()

  def __enter__(self) -> 'MetricWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


# ----------------------------------------------------- reading events back ---


def _records(path: str) -> Iterator[bytes]:
  """The payloads of a TFRecord file (length, crc, data, crc), a cut tail skipped."""
  with open(path, 'rb') as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      (length,) = struct.unpack('<Q', header[:8])
      data = f.read(length)
      if len(data) < length or len(f.read(4)) < 4:
        return
      yield data


def read_events(logdir: str, purge: bool = True) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value)] of a TensorBoard run folder, files in the order written.

  purge: apply TensorBoard's rule (a restart at step s hides earlier events at steps
  >= s), as `tensorboard` shows them; False: every event in the files.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out: dict[str, list[tuple[int, float]]] = {}
  names = sorted(f for f in os.listdir(logdir) if 'tfevents' in f) if os.path.isdir(
      logdir) else []
  for name in names:
    for data in _records(os.path.join(logdir, name)):
      event = event_pb2.Event.FromString(data)
      if purge and event.HasField('session_log') and event.session_log.status == 1:
        out = {t: [(s, v) for s, v in sv if s < event.step] for t, sv in out.items()}
      for value in event.summary.value:
        out.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return out


def scalars_of(records: list[Mapping[str, Any]], name: str) -> np.ndarray:
  """[(step, value)] of one scalar in JSONL records, as an [N, 2] array."""
  return np.array([(r['step'], r[name]) for r in records if name in r], np.float64)
