"""The FIM loss against the MSE on one task, fitted from random init (BUILD_NOTES, issue 14).

python -m launch.fim_fit --config=configs/image_cpu_paper.py [--lams=0,0.25,1] [--lrs=1e-3]

Takes the first task of each of --signals meta-test signals, fits one expert of the
config's `modular_fim` size to it with Adam at each rate in --lrs, minimising the FIM
loss (config.fim, lam from --lams; lam 0 is the MSE), and prints one JSON line per
(lam, rate) with, at each of --at steps, means over signals of: PSNR of the task, the
99th percentile and maximum of the per-sample error (max over channels), and how
concentrated the FIM weights (lam 1) are there: effective sample size
(sum w)^2 / (m sum w^2) and the largest weight. No meta-learning: this isolates what
the loss does to a test-time fit from what the init does.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from mclnf_jax import fields, learners, losses, process
from mclnf_jax.data import signals
from mclnf_jax.tasks import factory, task_spec


def fit(apply_fn, init, x, y, fim, lam: float, lr: float, steps: int, at: set[int]) -> dict:
  """Adam on the FIM loss (lam 0: MSE); statistics at the steps in `at`."""
  opt = optax.adam(lr)
  fim_loss = losses.by_name('fim', fim)          # the config's FIM loss, lam overridden
  loss = (lambda p: losses.mse(apply_fn, p, x, y)) if lam == 0 else (
      lambda p: fim_loss(apply_fn, p, x, y, lam=lam))

  @jax.jit
  def step(p, s):
    u, s = opt.update(jax.grad(loss)(p), s, p)
    return optax.apply_updates(p, u), s

  @jax.jit
  def stats(p):
    _, w = fim_loss(apply_fn, p, x, y, lam=1.0, return_weights=True)
    residual = apply_fn(p, x) - y
    err = jnp.abs(residual).max(-1)
    return {'psnr': -10 * jnp.log10(jnp.mean(jnp.square(residual))),
            'p99_error': jnp.percentile(err, 99), 'max_error': jnp.max(err),
            'weights_ess': jnp.sum(w) ** 2 / (w.size * jnp.sum(jnp.square(w))),
            'max_weight': jnp.max(w)}

  params, state, out = init, opt.init(init), {}
  for k in range(1, steps + 1):
    params, state = step(params, state)
    if k in at:
      out[k] = {name: float(v) for name, v in stats(params).items()}
  return out


def main(argv):
  del argv
  process.configure()
  f = flags.FLAGS
  config = f.config
  modality = factory.make_modality(config)
  field = learners.build_setup(config, 'modular_fim', task_spec(modality)).field
  at = {int(k) for k in f.at if int(k) <= f.steps}
  test = signals.load_signals(config, 'test')[:f.signals]
  tasks = [modality.episode(np.asarray(s)) for s in test]
  for lr in map(float, f.lrs):
    for lam in map(float, f.lams):
      runs = [fit(field.apply, field.init(jax.random.key(i)), jnp.asarray(e.context_x[0]),
                  jnp.asarray(e.context_y[0]), config.fim, lam, lr, f.steps, at)
              for i, e in enumerate(tasks)]
      means = {k: {name: float(np.mean([r[k][name] for r in runs])) for name in runs[0][k]}
               for k in sorted(at)}
      print(json.dumps({'config': config.name, 'lam': lam, 'adam_lr': lr,
                        'signals': len(tasks), 'samples': int(tasks[0].context_x.shape[1]),
                        'params': fields.param_count(field.init(jax.random.key(0))),
                        'at': means}), flush=True)


def define_flags() -> None:
  """The command's flags (defined when run, so tests can import `fit` beside others')."""
  config_flags.DEFINE_config_file('config', None, 'An image, video or audio config.',
                                  lock_config=False)
  flags.DEFINE_list('lams', ['0', '0.25', '1'], 'FIM lambdas (0: the MSE).')
  flags.DEFINE_list('lrs', ['1e-3'], 'Adam rates.')
  flags.DEFINE_integer('signals', 4, 'Meta-test signals (their first task each).')
  flags.DEFINE_integer('steps', 1024, 'Adam steps.')
  flags.DEFINE_list('at', ['16', '64', '256', '512', '1024'], 'Steps reported.')
  flags.mark_flag_as_required('config')


if __name__ == '__main__':
  define_flags()
  app.run(main)
