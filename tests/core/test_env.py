"""bge_core.env: every BGE_RAG_* variable parsed in one place; engines read them once, when built."""

from __future__ import annotations

import pytest
import torch

from bge_core import ConfigError, Embedder, batching, env


def test_unset_variables_leave_the_defaults():
    assert env.read_env({}) == env.EnvSettings()
    assert env.read_env({"BGE_RAG_CPU_STREAMS": " Auto ", "BGE_RAG_PREFETCH": ""}) == env.EnvSettings()


@pytest.mark.parametrize(
    ("name", "raw", "field", "value"),
    [
        (env.STREAMS_ENV, "2", "cpu_streams", 2),
        (env.THREADS_ENV, " 4 ", "cpu_threads", 4),
        (env.PREFETCH_ENV, "off", "prefetch", False),
        (env.PREPACK_ENV, "0", "prepack", False),
        (env.TOKENIZE_AHEAD_ENV, "YES", "tokenize_ahead", True),
    ],
)
def test_values_are_parsed(name, raw, field, value):
    assert getattr(env.read_env({name: raw}), field) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        (env.STREAMS_ENV, "many"),
        (env.THREADS_ENV, "0"),
        (env.PREFETCH_ENV, "maybe"),
        (env.PREPACK_ENV, "2"),
        (env.TOKENIZE_AHEAD_ENV, "sometimes"),
    ],
)
def test_a_typo_is_a_config_error_naming_the_variable(name, raw):
    with pytest.raises(ConfigError, match=name):
        env.read_env({name: raw})


def test_the_executor_follows_device_and_variables():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert batching.executor_for(cpu, env.EnvSettings()) == batching.CpuStreamsExecutor()
    assert batching.executor_for(cpu, env.EnvSettings(cpu_streams=1)) == batching.CpuStreamsExecutor(streams=1)
    assert batching.executor_for(cpu, env.EnvSettings(prefetch=True)) == batching.PrefetchExecutor()
    assert batching.executor_for(cuda, env.EnvSettings()) == batching.PrefetchExecutor(tokenize_ahead=True)
    assert batching.executor_for(cuda, env.EnvSettings(prefetch=False)) == batching.InlineExecutor(tokenize_ahead=True)
    assert batching.executor_for(cuda, env.EnvSettings(tokenize_ahead=False)).tokenize_ahead is False


def test_an_engine_reads_the_environment_once_when_built(models, monkeypatch):
    monkeypatch.setenv(env.STREAMS_ENV, "1")
    emb = Embedder(models.dense, precision="fp32")
    monkeypatch.setenv(env.STREAMS_ENV, "many")  # read per call, this would be a ConfigError
    assert emb.encode_documents(["one text", "another"]).shape[0] == 2
    with pytest.raises(ConfigError, match="BGE_RAG_CPU_STREAMS"):
        Embedder(models.dense, precision="fp32")  # a new engine reads it again
