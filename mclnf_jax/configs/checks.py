"""Config values checked before anything runs: one-line errors that say what to change.

`flags_parser` is the command lines' flag parser (`app.run(main, flags_parser=...)`): an
unknown `--config.x.y` key, a missing `--config=` file or a bad flag value prints one line
`error: ...` on stderr and exits with status 2 before anything is written.
"""
import difflib
import os
import sys

import ml_collections
from absl import flags

from mclnf_jax import fisher
from mclnf_jax.errors import UserError
from mclnf_jax.fields.sine import get_sine
from mclnf_jax.tasks.factory import modality_names


def _positive(value, key: str) -> None:
  if value <= 0:
    raise UserError(f'config.{key}={value} must be positive')


def check(config: ml_collections.ConfigDict) -> None:
  m, d, e = config.meta, config.data, config.eval
  if config.modality not in modality_names():
    raise UserError(f'unknown config.modality={config.modality!r}: use one of '
                    f'{", ".join(modality_names())} (or register one with '
                    'mclnf_jax.tasks.factory.register_modality)')
  for key in ('steps', 'batch_size', 'inner_steps', 'lr', 'clip', 'val_every', 'log_every',
              'save_every'):
    _positive(m[key], f'meta.{key}')
  for key in ('max_steps', 'batch_size'):
    _positive(e[key], f'eval.{key}')
  _positive(d.resolution, 'data.resolution')
  _positive(config.field.depth, 'field.depth')
  get_sine(config.field.sine)
  for key in ('num_train', 'num_val', 'num_test', 'seed'):
    if d[key] < 0:
      raise UserError(f'config.data.{key}={d[key]} must be >= 0')
  if m.schedule_steps < 0:
    raise UserError(f'config.meta.schedule_steps={m.schedule_steps} must be >= 0 '
                    '(0: meta.steps)')
  if m.max_bad_steps < 0:
    raise UserError(f'config.meta.max_bad_steps={m.max_bad_steps} must be >= 0 (0: never stop)')
  if not (m.spike_ratio == 0 or m.spike_ratio > 1):
    raise UserError(f'config.meta.spike_ratio={m.spike_ratio} must be 0 (never skip) or > 1: '
                    'a ratio of 1 or less skips ordinary meta-steps')
  if not m.val_drop_warn >= 0:
    raise UserError(f'config.meta.val_drop_warn={m.val_drop_warn} must be >= 0 (dB)')
  if not 0 <= m.lr_final_fraction <= 1:
    raise UserError(f'config.meta.lr_final_fraction={m.lr_final_fraction} must be in [0, 1]')
  for name, method in config.methods.items():
    _positive(method.width, f'methods.{name}.width')
    _positive(method.tto_lr, f'methods.{name}.tto_lr')
    _positive(method.inner_lr, f'methods.{name}.inner_lr')
  _positive(config.scene.rays_per_task, 'scene.rays_per_task')
  if config.scene.tto_rays_per_task < 0:
    raise UserError(f'config.scene.tto_rays_per_task={config.scene.tto_rays_per_task} must be '
                    '>= 0 (0: the meta-training rays_per_task)')
  if config.fim.lam < 0:
    raise UserError(f'config.fim.lam={config.fim.lam} must be >= 0')
  if config.fim.fisher not in fisher.ESTIMATORS:
    raise UserError(f'config.fim.fisher={config.fim.fisher!r}: use one of '
                    f'{", ".join(fisher.ESTIMATORS)}')
  _positive(config.fim.damping, 'fim.damping')
  if config.fim.max_ratio != 0 and not config.fim.max_ratio >= 1:
    raise UserError(f'config.fim.max_ratio={config.fim.max_ratio} must be >= 1 (or 0: '
                    'unbounded weights)')


CONFIG_FLAG = 'config'


def _config_keys() -> list[str]:
  from mclnf_jax.configs import base   # pylint: disable=import-outside-toplevel
  return list(base.declarations())


def unknown_key_problem(argv: list[str], flag: str = CONFIG_FLAG) -> str | None:
  """'unknown config key ...' for the first `--<flag>.x.y` override that names no key of
  `base_config()` (every config starts there), with the closest existing keys."""
  known = _config_keys()
  sections = {k.rsplit('.', 1)[0] for k in known if '.' in k}
  for arg in argv[1:]:
    if not arg.startswith(f'--{flag}.'):
      continue
    path = arg[len(flag) + 3:].split('=', 1)[0]
    if path in known or path in sections:
      continue
    close = difflib.get_close_matches(path, known, n=3, cutoff=0.5)
    hint = (f'did you mean {", ".join(close)}?' if close else
            'every key is listed in CONFIG.md')
    return f'unknown config key {path!r} (--{flag}.{path}): {hint}'
  return None


def _config_file_problem(argv: list[str], flag: str = CONFIG_FLAG) -> str | None:
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith(f'--{flag}='):
      value = arg.split('=', 1)[1]
    elif arg == f'--{flag}' and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    path = value.partition(':')[0]
    if not os.path.isfile(path):
      return f'config file {path} does not exist (--{flag}={value})'
  return None


def _first_line(error: BaseException) -> str:
  text = str(error).strip() or type(error).__name__
  return text.splitlines()[0]


def _flag_problem(error: BaseException) -> str:
  """One line of a flag error; one that carries a traceback (an exception in a config
  file's get_config) gives that exception's own line, e.g. a UserError's message."""
  text = str(error).strip()
  if 'Traceback' not in text:
    return _first_line(error)
  flag = text.split(': ', 1)[0]
  last = [l for l in text.splitlines() if l.strip()][-1].strip()
  user = f'{UserError.__module__}.{UserError.__name__}: '
  return f'{flag}: {last[len(user):] if last.startswith(user) else last}'


def flags_parser(argv: list[str]) -> list[str]:
  """Parses the command line like absl's default, but every problem is one line."""
  try:
    rest = flags.FLAGS(argv)
    if CONFIG_FLAG in flags.FLAGS:      # config_flags reports a missing file only on use
      getattr(flags.FLAGS[CONFIG_FLAG].value, 'keys', None)
    return rest
  except flags.Error as e:
    problem = _flag_problem(e)
  except Exception as e:  # pylint: disable=broad-except
    # config_flags raises AttributeError / KeyError / OSError / ... while it loads the
    # file and applies the overrides: say which input is wrong.
    problem = (_config_file_problem(argv) or unknown_key_problem(argv) or
               f'cannot load the config: {type(e).__name__}: {_first_line(e)}')
  print(f'error: {problem}', file=sys.stderr)
  sys.exit(2)
