"""`env.proprio`: the arm's joint state beside a frozen encoder's features (issue 24), which the
policy reads and the bonus does not."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mimex_jax import encoder_store
from mimex_jax.agents import build, check
from mimex_jax.agents.ppo import builder
from mimex_jax.config_checks import ConfigError
from mimex_jax.networks import image_mae

from conftest import pretrain_smoke_encoder

SIZE = 16


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
  return pretrain_smoke_encoder(str(tmp_path_factory.mktemp("encoder")), 2)


def _config(smoke_config, encoder_dir, task="ReachSparse", encoder="frozen"):
  config = smoke_config.copy_and_resolve_references()
  config.env.name = task
  config.env.obs_type = "pixels"
  config.env.pixels.height = config.env.pixels.width = SIZE
  config.env.pixels.frame_stack = 2
  config.env.pixels.camera = "front" if task == "ReachSparse" else "0"
  config.env.proprio = True
  config.ppo.encoder = encoder
  config.ppo.encoder_checkpoint = encoder_dir
  return config


@pytest.mark.long  # the arm's reset and renderer compile (about a minute)
def test_the_observation_is_the_features_then_the_arms_state(smoke_config, encoder_dir):
  config = _config(smoke_config, encoder_dir)
  check(config, 2)
  env = builder._make_env(config, num_worlds=4)
  model, params = encoder_store.load(encoder_dir)
  task = env.backend.pixels.backend  # the arm task under the renderer
  features = 2 * model.feature_size
  proprio_size = task.proprio(task.reset(jax.random.PRNGKey(0)).data).shape[0]
  assert proprio_size == 18  # 7 positions, 7 velocities, the grip point, the finger gap
  assert env.observation_shape == (features + proprio_size,)
  state = jax.jit(env.backend.reset)(jax.random.PRNGKey(1))
  np.testing.assert_allclose(state.obs[features:], task.proprio(state.inner.inner.data),
                             rtol=1e-6)
  frame = state.inner.frames[-1]
  encoded = model.apply(params, frame[None], method=image_mae.ImageMAE.encode)[0]
  np.testing.assert_allclose(state.obs[model.feature_size:features], encoded, rtol=1e-5,
                             atol=1e-5)


def test_the_bonus_reads_the_features_and_not_the_joint_state(smoke_config, encoder_dir):
  config = _config(smoke_config, encoder_dir)
  config.intrinsic.kind = "rnd"  # the cheapest bonus to build; all read `bonus_features`
  _, fused, _, _ = build(config)
  features = fused.env.env.backend.features_size
  obs = jax.random.normal(jax.random.PRNGKey(0), (3,) + fused.env.observation_shape)
  assert fused.env.observation_shape[0] == features + 18
  np.testing.assert_array_equal(fused.bonus_features(None, obs), obs[..., :features])


def test_proprio_must_be_a_bool(smoke_config, encoder_dir):
  config = _config(smoke_config, encoder_dir)
  config.env = {**config.env.to_dict(), "proprio": "yes"}  # past ml_collections' type lock
  with pytest.raises(ConfigError, match=r"^config key env.proprio='yes' is invalid; allowed: "
                                        r"True or False$"):
    check(config, 2)


@pytest.mark.parametrize("task, encoder, obs_type, message", [
    ("CartpoleBalance", "frozen", "pixels", r"^config key env.proprio=True: CartpoleBalance "
     r"defines no proprioceptive state"),
    ("ReachSparse", "conv", "pixels", r"^config key env.proprio=True needs ppo.encoder=frozen"),
    ("ReachSparse", "frozen", "state", r"^config key env.proprio=True adds the joint state"),
])
def test_proprio_where_it_cannot_be_is_one_line(smoke_config, encoder_dir, task, encoder,
                                                 obs_type, message):
  config = _config(smoke_config, encoder_dir, task, encoder)
  config.env.obs_type = obs_type
  with pytest.raises(ConfigError, match=message):
    check(config, 2)
    build(config)
