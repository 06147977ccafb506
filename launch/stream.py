"""Learners on a live stream: forgetting matrices and throughput (`mclnf_jax.stream`).

python -m launch.stream --config=configs/nerf_quickstart.py --workdir=DIR [--grid=8]
python -m launch.stream --config=configs/video_quickstart.py --workdir=DIR [--frames=64]
python -m launch.stream --bench [--bench_tasks=1000]

Scenes: one procedural city block (`data.city`) cut into grid x grid ground cells is
flown over cell by cell along a serpentine path; video: one embedded clip of `frames`
frames arrives frame by frame. Each learner (--learners, default modular, cl, er) learns
the same stream with `--steps` test-time steps per task; after every `--every` tasks the
PSNR of every task seen so far is measured (scenes: the cell's held-out views rendered;
video: the frame), giving a forgetting matrix per learner: DIR/stream_<kind>/
forgetting_<learner>.csv (row: tasks seen, column: task in arrival order) and
forgetting.png (heat maps side by side), plus throughput.json/.md (tasks/s, ms per query,
bytes per expert). --max_experts caps the modular experts (merging the oldest by each of
--merge: distill, average) and adds the capped runs beside the others.

Inits: a learner with a meta-learned init starts from DIR's meta-trained checkpoint when
DIR holds one (`Stream.from_workdir`), else from a random init, which is then adapted
with the config's random-init rule (OL's test-time optimiser; so is a learner the
paper's table of the modality lacks, CL on scenes); the output says which.

--bench: small fields on a 128 x 128 image of 32 x 32 cells (16 pixels a task) streamed
to 1,000 tasks; prints tasks/s, ms per 4,096-point query and bytes per expert at 10,
100 and 1,000 tasks, the step-cost ratio 1,000 / 10 and the compile counts.
"""
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags
import numpy as np

from mclnf_jax import learners, logs, process
from mclnf_jax.errors import UserError
from mclnf_jax.stream import Stream, bench, report, sources

config_flags.DEFINE_config_file('config', None, 'A nerf or video config.', lock_config=False)
flags.DEFINE_string('workdir', None, 'Output folder; also a meta-trained workdir to start from.')
flags.DEFINE_list('learners', ['modular', 'cl', 'er'], 'Learners streamed side by side.')
flags.DEFINE_integer('steps', 16, 'Test-time steps per task.')
flags.DEFINE_integer('every', 8, 'Tasks between two rows of the forgetting matrix.')
flags.DEFINE_integer('grid', 8, 'Scenes: ground cells per side of the city block.')
flags.DEFINE_integer('frames', 64, 'Video: frames of the clip (one task each).')
flags.DEFINE_integer('tasks', 0, 'Stop after this many tasks (0: the whole layout).')
flags.DEFINE_integer('max_experts', 0, 'Also stream modular with this cap (0: no capped run).')
flags.DEFINE_list('merge', ['distill'], 'Merges of the capped runs: distill, average.')
flags.DEFINE_integer('merge_steps', 0, 'Distillation steps per merge (0: 2 x --steps).')
flags.DEFINE_bool('bench', False, 'Throughput at 10, 100 and 1,000 tasks (small fields).')
flags.DEFINE_integer('bench_tasks', 1000, 'Tasks of the benchmark.')
flags.DEFINE_list('bench_learners', ['modular', 'cl', 'er'], 'Learners benchmarked.')


def initial(config, name: str, workdir: str):
  """(stream factory, what its init is) for learner `name` (see module doc)."""
  method = learners.BY_NAME[learners.canonical(name)]
  if method.meta_learned and os.path.isdir(os.path.join(workdir, name, 'checkpoints')):
    return (lambda **kw: Stream.from_workdir(workdir, name, config=config, **kw),
            f'meta-learned init of {workdir}/{name}')
  ol, rule = config.methods.ol, ''
  own = config.methods[name]
  if method.meta_learned or config.modality not in method.modalities:
    config = config.copy_and_resolve_references()
    config.methods[name].update(tto_opt=ol.tto_opt, tto_lr=ol.tto_lr)
    own = config.methods[name]
    rule = ' (the random-init rule, as OL)'
  return (lambda **kw: Stream(config, learner=name, **kw),
          f'RANDOM init (no meta-trained {name} in {workdir}); test-time '
          f'{own.tto_opt} {own.tto_lr}{rule}')


def run_learner(make, name: str, source, steps: int, every: int, log, **kwargs) -> dict:
  """Streams the source's tasks into one learner: its forgetting matrix and throughput."""
  stream = make(modality=source.modality, steps=steps, **kwargs)
  rows, fit_s = [], 0.0
  for i, task in enumerate(source.tasks):
    t0 = time.perf_counter()
    stream.observe(*task).block_until_ready()
    fit_s += time.perf_counter() - t0
    if (i + 1) % every == 0 or i + 1 == len(source.tasks):
      row = [source.psnr(stream, j) for j in range(i + 1)]
      rows.append((i + 1, row))
      log(f'{name}: {i + 1} tasks, PSNR of those seen: mean {np.mean(row):.2f} dB, first '
          f'{row[0]:.2f}, last {row[-1]:.2f}; {fit_s / (i + 1) * 1e3:.0f} ms per task')
  return {'rows': rows, 'tasks_per_s': len(source.tasks) / fit_s,
          'query_ms': bench.query_ms(stream, source.query_x),
          'bytes_per_expert': stream.bytes_per_expert(), 'experts': stream.num_experts,
          'compiles': dict(stream.traces)}


def stream_example(config, workdir: str, log) -> None:
  F = flags.FLAGS
  source = sources.load(config, F.grid, F.frames, F.tasks)
  out = os.path.join(workdir, f'stream_{source.kind}')
  log(f'{source.description}: {len(source.tasks)} tasks, {F.steps} steps each, a row '
      f'every {F.every} tasks -> {out}')
  runs = {}
  names = [(n, n, {}) for n in F.learners]
  for merge in F.merge if F.max_experts else ():
    names.append((f'modular_cap{F.max_experts}_{merge}', 'modular',
                  {'max_experts': F.max_experts, 'merge': merge,
                   'merge_steps': F.merge_steps or None}))
  for label, name, kwargs in names:
    make, what = initial(source.config, name, workdir)
    log(f'{label}: {what}' + (f', at most {F.max_experts} experts, the oldest merged by '
                              f'{kwargs["merge"]}' if kwargs else ''))
    runs[label] = run_learner(make, label, source, F.steps, F.every, log, **kwargs)
    report.write_matrix(out, label, runs[label]['rows'])
  report.write_heatmaps(os.path.join(out, 'forgetting.png'), runs, source.description)
  query = (f'{len(source.query_x)} rays x {config.render.num_samples} samples'
           if source.kind == 'city' else f'{len(source.query_x)} points')
  report.write_throughput(out, runs, source.description, query)
  for row in report.throughput_rows(runs):
    log(' | '.join(row))
  log(f'wrote {out}: forgetting_*.csv, forgetting.png, throughput.json/.md')


def main(argv):
  del argv
  logs.quiet_libraries()
  process.configure()
  F = flags.FLAGS
  log = lambda text: print(text, flush=True)
  try:
    if F.bench:
      bench.run(F.bench_learners, F.bench_tasks, log)
      return
    if F.config is None or F.workdir is None:
      raise UserError('give --config=<nerf or video config> and --workdir=DIR (or --bench)')
    stream_example(F.config, F.workdir, log)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


if __name__ == '__main__':
  app.run(main)
