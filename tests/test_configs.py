"""Every shipped config loads, passes the config checks and names learners it configures
(building them needs the data: the quickstarts are built end to end elsewhere)."""
import pathlib

import pytest

from launch.paper_tables import load_config_file
from mclnf_jax import config_checks, learners

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / 'configs').glob('*.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_checks_out_and_configures_its_learners(path):
  config = load_config_file(path)
  config_checks.check(config)
  for name in learners.names(config):
    assert name in learners.AVAILABLE and name in config.methods, name


def test_nerf_quickstart_fim_rate_follows_lam():
  config = load_config_file(next(p for p in CONFIGS if p.stem == 'nerf_quickstart'))
  assert config.methods.mcl_fim.tto_lr == config.methods.mcl.tto_lr / 2   # lam = 1
  config.fim.lam = 3.0
  assert config.methods.mcl_fim.inner_lr == config.methods.mcl.inner_lr / 4
