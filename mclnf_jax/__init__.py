"""Meta-Continual Learning of Neural Fields in JAX (see README.md).

`mclnf_jax.losses.fim_weighted_mse` needs only the core dependencies; experiments need
the `[data]` extra, audio and video data `[audio]` / `[video]` (`pip install
'mclnf_jax[all]'`).
"""
__version__ = '0.1.0'   # the one place of the version (pyproject reads it)

# The notebook API (mclnf_jax/api.py), imported on first use so that `import mclnf_jax`
# stays light: `mclnf_jax.fit(...)` is `mclnf_jax.api.fit(...)`.
_API = ('load_config', 'load_init', 'fit', 'export_npz', 'load_npz')  # not 'render': a module


def __getattr__(name):
  if name in _API:
    from mclnf_jax import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
