"""The NeRF MLP (Mildenhall et al., 2020, fig. 7) as a Flax module.

inputs [N, 6] = (x, y, z, unit view direction) -> raw [N, 4] = (rgb logits, density
logit); `render.py` applies sigmoid / softplus. Positional encoding (NeRF eq. 4)
gamma(p) = (p, sin(2^0 p), cos(2^0 p), ..., sin(2^{L-1} p), cos(2^{L-1} p)) with
frequencies 2^k and no pi factor, as the released NeRF code: scenes should be
scaled to a few units (the procedural city spans [-1, 1]^2).

Paper Table 7 study. The paper reports 2,628,099 parameters for its 10-layer,
width-512 NeRF and 659,459 per width-256 expert (d_in = 5, d_out = 4). Writing a
count as a d^2 + b d + c, the only non-negative fit of both numbers is
10 d^2 + 10 d + 1539: ten square d x d layers with biases plus a constant
1539 = 512 * 3 + 3, an RGB layer from 512 features, even for d = 256 (see
`table7_formula`). No MLP with an input layer from 5 (or positionally encoded)
inputs and a 4-output head has such a count: the input layer alone adds at least
6d and nothing cancels it, so the reading is "ten hidden 512x512 layers plus a
512 -> 3 head, input layer and density head not counted", and the width-256 figure
keeps the width-512 head (likely a copied term). We do not reproduce the table; our
counts (`nerf_param_count`) for this module, with a unit view direction (3 values
instead of theta, phi):
  depth 10, width 512, L_pos 10, L_dir 4:  2,831,108
  depth 10, width 256, L_pos 10, L_dir 4:    727,428   (x 4 experts: 2,909,712)
  depth 10, width 512 / 256, no encoding:  2,763,524 / 693,636
  depth 8,  width 256 (NeRF's own config):   595,844 (the known NeRF count)
The 4-expert total stays within 3% of one width-512 network, the table's point.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def positional_encoding(x: jax.Array, num_freqs: int) -> jax.Array:
  """[..., C] -> [..., C * (1 + 2 * num_freqs)]: (x, sin(2^k x), cos(2^k x))."""
  if num_freqs == 0:
    return x
  freqs = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)               # [L]
  angles = (x[..., None, :] * freqs[:, None]).reshape(*x.shape[:-1], -1)  # [..., L*C]
  return jnp.concatenate([x, jnp.sin(angles), jnp.cos(angles)], -1)


class NeRFMLP(nn.Module):
  """ReLU trunk of `depth` layers of `width` on gamma(x); the encoded position is
  re-injected (concatenated) after layer depth // 2 (NeRF: after the 5th of 8).
  Density comes from the trunk; RGB from a linear feature of the trunk concatenated
  with gamma(direction) through one ReLU layer of width // 2.

  As `Siren`, every dense layer sows its input and perturbs its pre-activation (the
  skip and view concatenations are just layer inputs), so the FIM loss reads per-sample
  layer gradients from taps; neither tap changes params or outputs, and `init` makes
  no perturbation variables (the taps' zeros come from `fisher.zero_perturbations`).
  """
  depth: int = 8
  width: int = 256
  pos_freqs: int = 10
  dir_freqs: int = 4
  skip: bool = True

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    def dense(name: str, features: int, h: jax.Array) -> jax.Array:
      self.sow('intermediates', name + '_input', h)
      z = nn.Dense(features, name=name)(h)
      # No perturbation at init: `init` returns the params alone, as before the taps.
      return z if self.is_initializing() else self.perturb(name + '_preact', z)

    pos = positional_encoding(inputs[..., :3], self.pos_freqs)      # [N, P]
    view = positional_encoding(inputs[..., 3:6], self.dir_freqs)    # [N, D]
    h = pos
    for i in range(self.depth):
      h = nn.relu(dense(f'trunk_{i}', self.width, h))               # [N, W]
      if self.skip and i == self.depth // 2 and i < self.depth - 1:
        h = jnp.concatenate([pos, h], -1)                           # [N, P + W]
    density = dense('density', 1, h)                                # [N, 1]
    feature = dense('feature', self.width, h)                       # [N, W]
    h = jnp.concatenate([feature, view], -1)
    h = nn.relu(dense('view', self.width // 2, h))                  # [N, W/2]
    rgb = dense('rgb', 3, h)                                        # [N, 3]
    return jnp.concatenate([rgb, density], -1)                      # [N, 4]

  @property
  def dense_names(self) -> list[str]:
    """Dense layers in the order they are created (as `Siren.dense_names`): params[name]
    = {kernel, bias}; taps `name + '_input'` in 'intermediates' and `name + '_preact'`
    in 'perturbations'."""
    return [f'trunk_{i}' for i in range(self.depth)] + ['density', 'feature', 'view', 'rgb']


def nerf_param_count(depth: int, width: int, pos_freqs: int = 10,
                     dir_freqs: int = 4, skip: bool = True) -> int:
  """Parameters (weights and biases) of NeRFMLP with these settings."""
  p, d, w, h = 3 * (1 + 2 * pos_freqs), 3 * (1 + 2 * dir_freqs), width, width // 2
  skip_in = p * w if skip and depth // 2 < depth - 1 else 0
  trunk = (p * w + w) + (depth - 1) * (w * w + w) + skip_in
  heads = (w + 1) + (w * w + w) + ((w + d) * h + h) + (h * 3 + 3)
  return trunk + heads


def table7_formula(width: int, num_layers: int = 10) -> int:
  """The paper's Table 7 arithmetic: num_layers (d x d + d) + (512 x 3 + 3).

  Reproduces 2,628,099 (d = 512) and 659,459 (d = 256); not an architecture.
  """
  return num_layers * (width * width + width) + 512 * 3 + 3
