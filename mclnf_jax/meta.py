"""Meta-training: the outer loop over a meta-batch of signals (eq. 1 and 2).

`meta_step(state, batch)` is one jitted, donated function of the global batch; over a
device mesh (`distributed.py`) the batch arrives split over the 'data' axis, the state is
replicated, and jit's shardings make the meta-gradient a sum over devices. The whole run
state (meta-params, optimiser state, step, best-so-far by meta-validation) is one
pytree that orbax saves whole (`checkpoints.py`), so a rerun resumes exactly where it
stopped. `meta_train` is the whole loop of one learner: resume, step, validate, save;
its scalars go to the learner folder's metrics.jsonl and tensorboard/train/
(`metric_writers`).

Divergence. The outer optimiser is wrapped in `optax.apply_if_finite`: a meta-step whose
loss or meta-gradient is not finite leaves the meta-params and the optimiser's moments
as they were, and its state counts the skip (`notfinite_count`: consecutive,
`total_notfinite`: all; both saved with the meta-state). After `meta.max_bad_steps`
consecutive skips the run stops with a one-line error naming the step and the last
good checkpoint; a state with non-finite meta-params is never saved; a meta-validation
PSNR more than `meta.val_drop_warn` dB below the best logs a warning (evaluation uses
the best meta-params anyway).

Spikes. A meta-gradient whose norm is more than `meta.spike_ratio` times the running
mean of the accepted ones is skipped the same way (`skip_spikes`). Near the edge of the
inner loop's stability the meta-gradient through a few SGD steps of a sine network can
jump by orders of magnitude; one such step, clipped and fed to Adam, was enough to send
audio MAML+CL's meta-training into chaos (grad norm 1e10, validation at silence), and
skipping it (one step in 500) let it meta-learn (BUILD_NOTES, audio).
"""
import contextlib
import functools
import os
import time
from typing import Any, Callable, Iterator, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from mclnf_jax import checkpoints, distributed, metric_writers
from mclnf_jax.configs.keys import schedule_steps
from mclnf_jax.errors import UserError
from mclnf_jax.learners.base import Learner
from mclnf_jax.types import Episode

MetaState = checkpoints.MetaState
# The running mean of accepted meta-gradient norms forgets with this factor per step.
SPIKE_DECAY = 0.9

# apply_if_finite gives up and applies a non-finite update after this many consecutive
# skips; the train loop stops long before (meta.max_bad_steps), so it never does.
NEVER_APPLY_NON_FINITE = 2**30


class SpikeState(NamedTuple):
  """`skip_spikes`'s state: the running mean of accepted norms around the inner state."""
  mean_norm: jax.Array      # 0 until the first finite meta-gradient
  inner_state: Any          # optax.ApplyIfFiniteState

  @property
  def notfinite_count(self) -> jax.Array:
    return self.inner_state.notfinite_count

  @property
  def total_notfinite(self) -> jax.Array:
    return self.inner_state.total_notfinite


def skip_spikes(inner: optax.GradientTransformation, ratio: float,
                decay: float = SPIKE_DECAY) -> optax.GradientTransformation:
  """Hands `inner` (an `optax.apply_if_finite`) a NaN gradient, so that it skips and counts
  the step, when the gradient's norm exceeds `ratio` x the running mean of the accepted
  norms; the mean follows accepted steps only (so a run of spikes cannot raise it)."""
  def init(params):
    return SpikeState(jnp.zeros((), jnp.float32), inner.init(params))

  def update(grads, state, params=None):
    norm = optax.tree.norm(grads)
    spike = (state.mean_norm > 0) & (norm > ratio * state.mean_norm)
    grads = jax.tree_util.tree_map(lambda g: jnp.where(spike, jnp.nan, g), grads)
    updates, inner_state = inner.update(grads, state.inner_state, params)
    followed = jnp.where(state.mean_norm > 0,
                         decay * state.mean_norm + (1 - decay) * norm, norm)
    accepted = jnp.isfinite(norm) & ~spike
    return updates, SpikeState(jnp.where(accepted, followed, state.mean_norm), inner_state)
  return optax.GradientTransformation(init, update)


def outer_optimizer(m) -> optax.GradientTransformation:
  """Adam with a clipped meta-gradient and a cosine-decayed rate (prototype trap 1).

  m: config.meta. Learned inner learning rates (Meta-SGD: a top-level 'log_lr' in the
  meta-params) get their own Adam at `m.rates_lr` and their own clipping `m.rates_clip`.
  Non-finite meta-gradients, and spikes when `m.spike_ratio` > 0, are skipped.
  """
  schedule = optax.cosine_decay_schedule(m.lr, max(schedule_steps(m), 1),
                                         alpha=m.lr_final_fraction)
  init = optax.chain(optax.clip_by_global_norm(m.clip), optax.adam(schedule))
  rates = optax.chain(optax.clip_by_global_norm(m.rates_clip), optax.adam(m.rates_lr))

  def labels(params):
    if isinstance(params, dict) and 'log_lr' in params:
      return {k: 'rates' if k == 'log_lr' else 'init' for k in params}
    return jax.tree_util.tree_map(lambda _: 'init', params)
  finite = optax.apply_if_finite(optax.multi_transform({'init': init, 'rates': rates}, labels),
                                 NEVER_APPLY_NON_FINITE)
  return skip_spikes(finite, m.spike_ratio) if m.spike_ratio else finite


def bad_steps(state: MetaState) -> tuple[jax.Array, jax.Array]:
  """(consecutive, total) meta-steps skipped for a non-finite loss or meta-gradient, or a
  spike."""
  opt = state['opt_state']
  return opt.notfinite_count, opt.total_notfinite


@jax.jit
def all_finite(tree) -> jax.Array:
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]))


def init_state(learner: Learner, optimizer, key: jax.Array) -> MetaState:
  params = learner.init(key)
  return {'step': jnp.zeros((), jnp.int32), 'params': params,
          'opt_state': optimizer.init(params),
          'best_params': jax.tree_util.tree_map(jnp.copy, params),
          'best_val_mse': jnp.full((), jnp.inf)}


def state_builder(learner: Learner, optimizer, key: jax.Array,
                  mesh: Optional[jax.sharding.Mesh] = None) -> Callable[[], MetaState]:
  """init_fn() -> the initial meta-state; over a mesh built replicated by
  `jit(init, out_shardings=...)` (every process holds a copy orbax can save), and, through
  `jax.eval_shape`, the template a checkpoint restores into with the same shardings."""
  init_fn = functools.partial(init_state, learner, optimizer, key)
  if mesh is None:
    return init_fn
  return jax.jit(init_fn, out_shardings=distributed.replicated(mesh))


def batch_loss(learner: Learner, params, batch: Episode):
  """Mean meta-loss over a batch of episodes stacked on axis 0.

  A batch of one is not vmapped: over a size-1 axis XLA:CPU computes the second-order
  meta-gradient's sines twice (one fusion per consumer shape, [1, E, N, W] and
  [E, N, W]) and lays out flax's matmuls transposed; the CelebA meta-step then
  evaluates 40 sines and cosines per call instead of 24 (launch/profile_meta.py).
  """
  if jax.tree_util.tree_leaves(batch)[0].shape[0] == 1:
    losses, aux = learner.meta_loss(params, jax.tree_util.tree_map(lambda x: x[0], batch))
  else:
    losses, aux = jax.vmap(learner.meta_loss, in_axes=(None, 0))(params, batch)
  return losses.mean(), jax.tree_util.tree_map(jnp.mean, aux)


def _jit(fn: Callable, mesh: Optional[jax.sharding.Mesh], **kwargs) -> Callable:
  """jit with every output replicated over `mesh` (so every process can read it)."""
  if mesh is not None:
    kwargs['out_shardings'] = distributed.replicated(mesh)
  return jax.jit(fn, **kwargs)


def make_meta_step(learner: Learner, optimizer,
                   mesh: Optional[jax.sharding.Mesh] = None) -> Callable[[MetaState, Episode],
                                                                         tuple]:
  """One outer update: grad of the meta-loss through the whole inner loop.

  mesh: the batch comes split over its 'data' axis, the state and the outputs are
  replicated (the batch mean of the meta-loss becomes an all-reduce of the gradient).
  """
  def meta_step(state: MetaState, batch: Episode):
    (loss, aux), grads = jax.value_and_grad(
        functools.partial(batch_loss, learner), has_aux=True)(state['params'], batch)
    # A non-finite loss with a finite gradient is skipped too (apply_if_finite reads
    # the gradient only).
    checked = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan),
                                     grads)
    updates, opt_state = optimizer.update(checked, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
               'param_norm': optax.tree.norm(params),
               'bad_steps': opt_state.notfinite_count,
               'skipped_steps': opt_state.total_notfinite, **aux}
    return {**state, 'step': state['step'] + 1, 'params': params,
            'opt_state': opt_state}, metrics
  return _jit(meta_step, mesh, donate_argnums=0)


def make_validate(learner: Learner,
                  mesh: Optional[jax.sharding.Mesh] = None) -> Callable[[Any, Episode], jax.Array]:
  """Mean squared error after the inner loop on held-out meta-validation signals."""
  def validate(params, batch: Episode):
    return batch_loss(learner, params, batch)[1]['mse']
  return _jit(validate, mesh)


@functools.partial(jax.jit, donate_argnums=0)
def keep_if_best(state: MetaState, val_mse: jax.Array) -> MetaState:
  better = val_mse < state['best_val_mse']          # False for a NaN val_mse
  pick = lambda new, old: jnp.where(better, new, old)
  return {**state, 'best_params': jax.tree_util.tree_map(pick, state['params'],
                                                          state['best_params']),
          'best_val_mse': pick(val_mse, state['best_val_mse'])}


def psnr(mse) -> float:
  with np.errstate(divide='ignore', invalid='ignore'):
    return float(-10 * np.log10(float(mse)))


def batch_indices(seed: int, step: int, num_signals: int, batch_size: int) -> np.ndarray:
  """The global meta-batch of a step: a function of (seed, step) only, so resume is exact.

  Every process computes the same indices; with several processes each loads its own
  slice (`process_slice`) of them.
  """
  rng = np.random.default_rng([seed, step])
  return rng.choice(num_signals, size=batch_size, replace=batch_size > num_signals)


def process_slice(indices: np.ndarray,
                  mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """This process's rows of a global meta-batch: over a mesh, those its devices hold of
  the batch split over 'data' (`distributed.process_rows`); else an equal share by
  process index."""
  if mesh is not None:
    return indices[distributed.process_rows(mesh, len(indices))]
  n, pid = jax.process_count(), jax.process_index()
  per = len(indices) // n
  return indices[pid * per:(pid + 1) * per]


def place_validation(mesh: jax.sharding.Mesh, batch: Episode, experts: bool = False) -> Episode:
  """Meta-validation episodes (every process holds them all) as global arrays: split over
  'data' when their number divides it, else replicated (each device validates them all)."""
  num = len(jax.tree_util.tree_leaves(batch)[0])
  if num % mesh.shape[distributed.DATA]:
    return distributed.put(batch, distributed.replicated(mesh))
  return distributed.put(batch, distributed.episode_shardings(mesh, batch, experts))


def compiled_with_collectives(meta_step: Callable, name: str, mesh: jax.sharding.Mesh,
                              state: MetaState, batch: Episode) -> Callable:
  """The meta-step compiled for these shapes, after logging the collectives XLA placed in
  it (BUILD_NOTES "Scale-out" reads them from this line)."""
  compiled = meta_step.lower(state, batch).compile()
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  logging.info('%s: meta-step on mesh %s: %.3g GFLOP per device; collectives per device: %s',
               name, dict(mesh.shape), cost.get('flops', float('nan')) / 1e9,
               distributed.describe(distributed.collectives(compiled.as_text())))
  return compiled


class Progress:
  """A periodic log line with rate and ETA (absl logging: log files and several
  processes read it well, which a redrawn progress bar such as tqdm does not; clu's
  `ReportProgress` would pull TensorFlow in through clu.metric_writers)."""

  def __init__(self, name: str, start: int, total: int):
    self.name, self.start, self.total, self.t0 = name, start, total, time.time()

  def rate(self, step: int) -> float:
    """Steps per second since `start`."""
    return (step - self.start) / max(time.time() - self.t0, 1e-9)

  def line(self, step: int, **values: float) -> str:
    rate = self.rate(step)
    eta = (self.total - step) / rate if rate > 0 else float('inf')
    vals = ' '.join(f'{k}={v:.4g}' for k, v in values.items())
    return (f'{self.name} {step}/{self.total} {vals} '
            f'[{rate:.2f} it/s, ETA {eta / 60:.1f} min]')


def train(learner: Learner, optimizer, state: MetaState, episode_batch: Callable[[int], Episode],
          val_batch: Episode, *, steps: int, val_every: int, log_every: int,
          save: Callable[[MetaState], None], save_every: int,
          writer: Optional[metric_writers.MetricWriter] = None, max_bad_steps: int = 0,
          val_drop_warn: float = float('inf'), folder: str = '',
          mesh: Optional[jax.sharding.Mesh] = None) -> Iterator[MetaState]:
  """Runs meta-steps from state['step'] to `steps`; yields the state after each save.

  writer: where the scalars go besides the log line (meta-loss, grad and param norms,
  rate at log steps; val_mse and val_psnr at validation steps). max_bad_steps: stop
  (UserError) after this many consecutive skipped non-finite steps (0: never);
  val_drop_warn: warn when meta-validation PSNR falls this many dB below the best;
  folder: the learner folder, named in the errors. mesh: the batches are global arrays
  over it and the state is replicated (`meta_train` places both).
  """
  meta_step = make_meta_step(learner, optimizer, mesh)
  validate = make_validate(learner) if mesh is None else make_validate(learner, mesh)
  first = int(state['step'])
  progress = Progress(f'meta-train {learner.name}', first, steps)
  val_psnr = float('nan')
  last_saved = first if first else None     # the checkpoint this run resumed from
  where = os.path.join(folder, 'checkpoints') if folder else 'the learner folder'

  def last_good() -> str:
    if last_saved is None:
      return 'no checkpoint was saved yet'
    return f'the last good checkpoint is step {last_saved} in {where}'

  def check(done: int, metrics: dict) -> None:
    """Stops after max_bad_steps consecutive skipped steps (read one step late, so that
    the next meta-batch is still prepared while a step runs)."""
    bad = int(metrics['bad_steps'])
    if not bad:
      return
    logging.warning('%s: meta-step %d skipped: meta-loss %s, meta-gradient norm %s: not '
                    'finite, or a spike (%d in a row, %d in all)', learner.name, done,
                    float(metrics['loss']), float(metrics['grad_norm']), bad,
                    int(metrics['skipped_steps']))
    if max_bad_steps and bad >= max_bad_steps:
      raise UserError(
          f'{learner.name}: {bad} meta-steps in a row up to step {done} had a non-finite '
          f'meta-loss or meta-gradient, or a spiking one (meta.max_bad_steps={max_bad_steps}); '
          f'{last_good()}; lower meta.lr or the inner learning rate, or check the data for '
          'NaN/inf')

  pending = None
  for step in range(first, steps):
    batch = episode_batch(step)
    if step == first and mesh is not None and mesh.size > 1:
      meta_step = compiled_with_collectives(meta_step, learner.name, mesh, state, batch)
    state, metrics = meta_step(state, batch)
    done, scalars = step + 1, {}
    if pending is not None:
      check(*pending)
    pending = (done, metrics)
    if done % val_every == 0 or done == steps:
      best_psnr = psnr(state['best_val_mse'])
      val_mse = validate(state['params'], val_batch)
      state = keep_if_best(state, val_mse)
      val_psnr = psnr(val_mse)
      scalars.update(val_mse=float(val_mse), val_psnr=val_psnr)
      if not val_psnr >= best_psnr - val_drop_warn:
        logging.warning('%s: meta-validation PSNR %.2f dB at step %d, more than %g dB below '
                        'the best %.2f dB (evaluation uses the best meta-params)',
                        learner.name, val_psnr, done, val_drop_warn, best_psnr)
    if done % log_every == 0 or done == steps or step == first:
      loss = float(metrics['loss'])
      scalars.update(loss=loss, grad_norm=float(metrics['grad_norm']),
                     param_norm=float(metrics['param_norm']), rate=progress.rate(done),
                     skipped_steps=int(metrics['skipped_steps']))
      logging.info(progress.line(done, loss=loss, val_psnr=val_psnr,
                                 grad_norm=scalars['grad_norm']))
    if writer is not None and scalars:
      writer.write(done, **scalars)
    if done % save_every == 0 or done == steps:
      check(*pending)
      pending = None
      if not bool(all_finite((state['params'], state['best_params']))):
        raise UserError(
            f'{learner.name}: the meta-params are not finite at step {done} and were not '
            f'saved; {last_good()}; lower meta.lr or the inner learning rate')
      if writer is not None:
        writer.flush()
      save(state)
      last_saved = done
      yield state


def meta_train(learner: Learner, m, seed: int, folder: str,
               episode_batch: Callable[[int], Episode], val_batch: Callable[[], Episode],
               mesh: Optional[jax.sharding.Mesh] = None, experts: bool = False) -> Any:
  """Meta-trains (or resumes) one learner to `m.steps` (config.meta); its best meta-params.

  episode_batch(step) is the meta-batch of a step: the whole of it, or over a `mesh` this
  process's rows of it (`process_slice`); val_batch() the meta-validation episodes, loaded
  only when there are steps left to run. experts: split the tasks (experts) of the
  context arrays over the mesh's 'expert' axis (modular learners). Process 0 alone writes
  the metrics; every process saves its part of the checkpoints.
  """
  optimizer = outer_optimizer(m)
  init_fn = state_builder(learner, optimizer, jax.random.key(seed), mesh)
  batches = episode_batch
  if mesh is not None:
    distributed.check_divides(m.batch_size, mesh, 'config.meta.batch_size')
    batches = lambda step: distributed.global_batch(mesh, episode_batch(step), m.batch_size,
                                                    experts)
  state = checkpoints.resume(folder, init_fn, m.init_from)
  if int(state['step']) < m.steps:
    val = val_batch()
    if mesh is not None:
      val = place_validation(mesh, val, experts)
    writes = distributed.is_main()
    with (metric_writers.MetricWriter(folder, 'train', start=int(state['step'])) if writes
          else contextlib.nullcontext()) as writer:
      for state in train(learner, optimizer, state, batches, val,
                         steps=m.steps, val_every=m.val_every, log_every=m.log_every,
                         save=functools.partial(checkpoints.save, folder),
                         save_every=m.save_every, writer=writer,
                         max_bad_steps=m.max_bad_steps, val_drop_warn=m.val_drop_warn,
                         folder=folder, mesh=mesh):
        pass
  return state['best_params']


def best_params(learner: Learner, m, seed: int, folder: str,
                mesh: Optional[jax.sharding.Mesh] = None) -> Any:
  """The best meta-params a finished (or interrupted) meta-training run saved (over a
  `mesh`: restored replicated on it, whatever mesh or process count saved them)."""
  optimizer = outer_optimizer(m)
  step, state = checkpoints.restore(
      folder, state_builder(learner, optimizer, jax.random.key(seed), mesh))
  if step < m.steps:
    logging.warning('%s: evaluating an unfinished meta-training run (step %d of %d)',
                    learner.name, step, m.steps)
  return state['best_params']
