#!/usr/bin/env python3
"""stable-baselines3 PPO throughput on an environment equivalent to orch's Online Boutique one.

Same spaces as orch's environment: a flat observation of OBS floats (11 services x 9 node features, one rate per
call-graph edge, the offered load) and MultiDiscrete([5] * 11) actions (-2..+2 replicas per service, all at once).
`queue`: each step runs 15 one-second ticks of a small queueing model in numpy (Poisson arrivals along a fixed
call fan-out, M/M/c waiting by Sakasegawa's approximation per service, pods starting after a delay), comparable in work to orch's
simulator step; `free`: the same spaces with a step that costs nothing, SB3's ceiling.
PPO settings as orch's bench: 2 environments (DummyVecEnv), n_steps 512, batch 64, 10 epochs, lr 3e-4, the default
MlpPolicy (separate actor and critic, two tanh layers of 64).

usage: sb3_speed.py OBS ITERATIONS
"""
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

SERVICES = 11
# Calls per /cart request reaching each service (frontend, cart, productcatalog, currency, payment, shipping, email,
# checkout, recommendation, ad, redis-cart), CPU ms per call, and a per-pod limit of 200 millicores.
CALLS = np.array([1.0, 1.0, 4.0, 4.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
CPU_MS = np.array([1.0, 0.5, 0.3, 0.2, 0.3, 0.3, 0.3, 0.5, 0.8, 0.4, 0.2])
LIMIT_M = 200.0
MAX_REPLICAS = 10


def mmc_wait(rate, mu, c):
    """Mean M/M/c wait in seconds, Sakasegawa's approximation, vectorized over services."""
    rho = np.minimum(rate / (c * mu), 0.999)
    return rho ** (np.sqrt(2.0 * (c + 1.0)) - 1.0) / (c * mu * (1.0 - rho))


class QueueEnv(gym.Env):
    def __init__(self, obs, free=False):
        self.observation_space = gym.spaces.Box(0.0, 10.0, shape=(obs,), dtype=np.float32)
        self.action_space = gym.spaces.MultiDiscrete([5] * SERVICES)
        self.obs_len = obs
        self.free = free
        self.rng = np.random.default_rng(1)

    def reset(self, seed=None, options=None):
        self.t = 0
        self.replicas = np.ones(SERVICES)
        self.ready = np.ones(SERVICES)
        self.starting = np.zeros(SERVICES)
        return np.zeros(self.obs_len, dtype=np.float32), {}

    def step(self, action):
        self.t += 15
        if self.free:
            return np.zeros(self.obs_len, dtype=np.float32), 0.0, False, self.t >= 900, {}
        self.replicas = np.clip(self.replicas + np.asarray(action) - 2, 1, MAX_REPLICAS)
        mu = LIMIT_M / CPU_MS
        violated = 0
        for _ in range(15):
            self.starting += np.where(self.replicas > self.ready, 1.0, 0.0)
            up = self.starting >= 15
            self.ready = np.where(up, self.replicas, np.minimum(self.ready, self.replicas))
            self.starting[up] = 0
            arrivals = self.rng.poisson(400.0 * CALLS)
            wait = mmc_wait(arrivals + 1e-9, mu, np.maximum(self.ready, 1.0))
            latency = np.sum(CALLS * (wait + CPU_MS / LIMIT_M))
            violated += latency > 0.06
        util = arrivals * CPU_MS / (LIMIT_M * np.maximum(self.ready, 1))
        obs = np.zeros(self.obs_len, dtype=np.float32)
        obs[: 9 * SERVICES : 9] = self.ready / MAX_REPLICAS
        obs[3 : 9 * SERVICES : 9] = np.minimum(util, 10.0)
        reward = -(self.ready.sum() / (SERVICES * MAX_REPLICAS) + 2.0 * violated / 15.0)
        return obs, float(reward), False, self.t >= 900, {}


def run(obs, iterations, free):
    env = make_vec_env(lambda: QueueEnv(obs, free), n_envs=2, seed=1)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=64, n_epochs=10, learning_rate=3e-4, seed=1, verbose=0,
                device="cpu")
    model.learn(total_timesteps=1024)  # warm-up iteration
    start = time.perf_counter()
    model.learn(total_timesteps=1024 * iterations, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    return 1024 * iterations / seconds, seconds


def main():
    obs, iterations = int(sys.argv[1]), int(sys.argv[2])
    # One thread, as orch's update step (its 2 threads step the 2 environments); with 2 threads on a loaded machine
    # torch ran several times slower still.
    torch.set_num_threads(1)
    env = QueueEnv(obs)
    env.reset()
    start = time.perf_counter()
    steps = 0
    while time.perf_counter() - start < 1.0:
        _, _, _, truncated, _ = env.step(np.full(SERVICES, 2))
        steps += 1
        if truncated:
            env.reset()
    print(f"ENV step_us {1e6 * (time.perf_counter() - start) / steps:.2f}")
    for name, free in [("sb3-ppo-queue", False), ("sb3-ppo-free-env", True)]:
        rate, seconds = run(obs, iterations, free)
        print(f"RESULT {name} {rate:.1f} ({1024 * iterations} env steps in {seconds:.2f} s)")


if __name__ == "__main__":
    main()
