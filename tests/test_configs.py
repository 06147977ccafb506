"""Every shipped config (and its CPU variant) loads, passes the config checks and names
learners it configures (building them needs the data: the quickstarts are built end to
end elsewhere); every list of methods comes from the one registry."""
import pathlib

import pytest

from launch.paper_tables import load_config_file
from mclnf_jax.errors import UserError
from mclnf_jax import learners
from mclnf_jax.configs import base, checks

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / 'configs').glob('*.py'))
# Paper configs take a variant argument (`configs/x.py:cpu`); quickstarts and `*_cpu*`
# configs are CPU already.
VARIANTS = [str(p) for p in CONFIGS] + [
    f'{p}:cpu' for p in CONFIGS if 'quickstart' not in p.stem and '_cpu' not in p.stem]


@pytest.mark.parametrize('path', VARIANTS, ids=[pathlib.Path(p).name for p in VARIANTS])
def test_config_checks_out_and_configures_its_learners(path):
  config = load_config_file(path)
  checks.check(config)
  for name in learners.names(config):
    assert name in learners.AVAILABLE and name in config.methods, name


def test_cpu_variant_is_the_quickstart_on_other_data():
  cpu = load_config_file(f'{CONFIGS[0].parent}/image_celeba.py:cpu')
  quick = load_config_file(CONFIGS[0].parent / 'quickstart.py')
  for section in ('field', 'methods', 'meta', 'eval', 'tasks'):
    assert cpu[section].to_dict() == quick[section].to_dict(), section
  assert cpu.data.resolution == quick.data.resolution == 32
  assert cpu.data.name == 'celeb_a' and quick.data.name == 'embedded'


def test_an_unknown_variant_is_a_one_line_error():
  with pytest.raises(UserError, match="unknown config variant 'gpu'"):
    load_config_file(f'{CONFIGS[0].parent}/image_celeba.py:gpu')


def test_method_lists_derive_from_the_registry():
  c = base.base_config()
  assert set(c.methods) == set(learners.AVAILABLE)
  assert learners.paper_methods('nerf') == ('mean', 'ol', 'er', 'ewc', 'meil_nerf', 'mol',
                                            'maml_cl', 'oml', 'modular', 'modular_fim')
  base.set_widths(c, 7, 3)
  assert {n for n in c.methods if c.methods[n].width == 3} == {'modular', 'modular_fim'}
  c.learners = 'mcl, mcl_fim,modular'            # old names are aliases
  assert learners.names(c) == ['modular', 'modular_fim']


@pytest.mark.parametrize('path', VARIANTS, ids=[pathlib.Path(p).name for p in VARIANTS])
def test_ours_mod_and_mim_take_the_same_rates(path):
  """Normalised FIM weights average one, so one rate gives both the same mean step."""
  config = load_config_file(path)
  assert config.fim.normalize
  for key in ('inner_opt', 'inner_lr', 'tto_opt', 'tto_lr'):
    assert config.methods.modular_fim[key] == config.methods.modular[key], key
