"""RND and ICM: after training on familiar data they score unseen inputs higher; ICM's inverse
model learns which action was taken."""

import jax
import jax.numpy as jnp
import numpy as np

from mimex_jax.intrinsic import Icm, IntrinsicBatch, Rnd

OBS, ACTIONS = 4, 2
MIXING = jnp.array([[1.0, -0.5, 0.3, 0.8], [0.2, 0.9, -0.7, 0.4]])  # action -> obs change


def _transitions(key, num, offset=0.0, dynamics=MIXING):
  obs_key, action_key = jax.random.split(key)
  obs = offset + 0.3 * jax.random.normal(obs_key, (num, 1, OBS))  # [T=num, B=1, D]
  action = jax.random.uniform(action_key, (num, 1, ACTIONS), minval=-1, maxval=1)
  return IntrinsicBatch(obs=obs, action=action, next_obs=obs + action @ dynamics,
                        done=jnp.zeros((num, 1)))


def _train(module, state, batches_key, updates=300, **batch_kwargs):
  @jax.jit
  def run(state, key):
    def body(state, step_key):
      data_key, update_key = jax.random.split(step_key)
      state, reward, metrics = module.update(state, _transitions(data_key, 256, **batch_kwargs),
                                             update_key)
      return state, (reward.mean(), metrics)
    return jax.lax.scan(body, state, jax.random.split(key, updates))
  return run(state, batches_key)


def _assert_novel_scores_higher(module, state, familiar, novel):
  score = jax.jit(module.reward)
  familiar_scores = score(state, familiar, jax.random.PRNGKey(0))
  novel_scores = score(state, novel, jax.random.PRNGKey(0))
  assert familiar_scores.shape == novel_scores.shape == (512, 1)
  assert float(novel_scores.mean()) > 5 * float(familiar_scores.mean()), (
      float(novel_scores.mean()), float(familiar_scores.mean()))
  assert float(jnp.mean(novel_scores > jnp.median(familiar_scores))) > 0.95


def test_rnd_scores_unseen_observations_above_familiar_ones():
  rnd = Rnd(OBS)
  state = rnd.init(jax.random.PRNGKey(0), num_envs=1)
  target_before = state.target_params
  state, (rewards, _) = _train(rnd, state, jax.random.PRNGKey(1))
  assert float(rewards[-20:].mean()) < 0.1 * float(rewards[:20].mean())
  # The target network never trains.
  for a, b in zip(jax.tree.leaves(target_before), jax.tree.leaves(state.target_params)):
    np.testing.assert_array_equal(a, b)
  _assert_novel_scores_higher(rnd, state, _transitions(jax.random.PRNGKey(2), 512),
                              _transitions(jax.random.PRNGKey(3), 512, offset=2.0))


def test_icm_scores_unseen_transitions_above_familiar_ones():
  icm = Icm(OBS, ACTIONS)
  state = icm.init(jax.random.PRNGKey(0), num_envs=1)
  state, (rewards, metrics) = _train(icm, state, jax.random.PRNGKey(1))
  assert float(metrics["icm_forward_loss"][-20:].mean()) < float(
      metrics["icm_forward_loss"][:20].mean())
  # Transitions of another dynamics, from elsewhere in the state space.
  novel = _transitions(jax.random.PRNGKey(3), 512, offset=1.5, dynamics=-2.0 * MIXING)
  _assert_novel_scores_higher(icm, state, _transitions(jax.random.PRNGKey(2), 512), novel)


def test_icm_inverse_model_learns_the_action_taken():
  icm = Icm(OBS, ACTIONS)
  state = icm.init(jax.random.PRNGKey(0), num_envs=1)
  _, (_, metrics) = _train(icm, state, jax.random.PRNGKey(1), updates=400)
  inverse = np.asarray(metrics["icm_inverse_loss"])
  action_variance = 1.0 / 3.0  # of U(-1, 1): what predicting the mean would score
  assert inverse[0] > 0.75 * action_variance  # it starts knowing nothing
  assert inverse[-20:].mean() < 0.05 * action_variance, inverse[-20:].mean()


def test_update_rewards_are_the_pre_step_errors():
  for module in (Rnd(OBS), Icm(OBS, ACTIONS)):
    state = module.init(jax.random.PRNGKey(0), num_envs=1)
    batch = _transitions(jax.random.PRNGKey(1), 64)
    scored = module.reward(state, batch, jax.random.PRNGKey(2))
    new_state, reward, _ = jax.jit(module.update)(state, batch, jax.random.PRNGKey(2))
    np.testing.assert_allclose(reward, scored, rtol=1e-5)
    after = module.reward(new_state, batch, jax.random.PRNGKey(2))
    assert float(after.mean()) < float(scored.mean())  # one step on this batch lowers its error
