"""Device and precision choice; bf16 stays close to fp32; outputs are always float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bge_core import ConfigError, Embedder, Reranker, devices
from bge_core.devices import resolve_device, resolve_precision


def test_default_device_is_one_device():
    dev = resolve_device(None)
    if torch.cuda.is_available():
        assert dev == torch.device("cuda", 0)
    elif not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        assert dev == torch.device("cpu")


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_precision_on_cpu_follows_detection(monkeypatch, bf16):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: bf16)
    expected = torch.bfloat16 if bf16 else torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_auto_precision_on_cuda_is_fp16():
    assert resolve_precision("auto", torch.device("cuda", 0)) == torch.float16


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("fp32", torch.float32), ("float16", torch.float16), ("BF16", torch.bfloat16), ("bfloat16", torch.bfloat16)],
)
def test_explicit_precisions(name, dtype):
    assert resolve_precision(name, torch.device("cpu")) == dtype


def test_bf16_detection_is_a_bool():
    assert isinstance(devices.cpu_supports_bf16(), bool)


def test_explicit_device_is_honoured(models):
    emb = Embedder(models.dense, device="cpu", precision="fp32")
    assert emb.device == torch.device("cpu")
    assert next(emb._backbone.model.parameters()).device == torch.device("cpu")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or any GPU without CUDA
    with pytest.raises(ConfigError, match="CUDA"):
        Embedder(models.dense, device=missing)


@pytest.mark.slow
def test_bf16_is_close_to_fp32_on_every_text(models, mixed_texts, paragraphs):
    texts = [*mixed_texts, *paragraphs[600:700]]
    fp32 = Embedder(models.dense, precision="fp32").encode_documents(texts)
    bf16_emb = Embedder(models.dense, precision="bf16")
    assert bf16_emb.dtype == torch.bfloat16
    bf16 = bf16_emb.encode_documents(texts)
    assert bf16.dtype == np.float32
    cosine = np.sum(fp32 * bf16, axis=1)  # both are unit vectors
    assert cosine.min() >= 0.999, cosine.min()


def test_reduced_precision_reranker_returns_python_floats(models, paragraphs):
    scores = Reranker(models.reranker, precision="bf16").score([(paragraphs[0], paragraphs[1])] * 3)
    assert all(type(s) is float for s in scores)
    reference = Reranker(models.reranker, precision="fp32").score([(paragraphs[0], paragraphs[1])])[0]
    assert scores[0] == pytest.approx(reference, abs=0.05)


# --------------------------------------------------------------------------- CPUs the process may use
def _fake_root(tmp_path, cgroup, mounts, files):
    """A fake filesystem root: /proc/self/cgroup, /proc/self/mountinfo and cgroup files."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    (tmp_path / "proc/self/mountinfo").write_text(mounts)
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


V2_MOUNT = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"
V1_MOUNTS = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
)


def test_cgroup_v2_quota_rounds_up(tmp_path):
    root = _fake_root(
        tmp_path,
        "0::/kubepods/pod1\n",
        V2_MOUNT,
        {
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "150000 100000\n",
        },
    )
    assert devices.cgroup_cpu_quota(root) == pytest.approx(1.5)
    assert devices.available_cpus(root, affinity=8) == 2
    assert devices.available_cpus(root, affinity=1) == 1  # the affinity mask can be smaller still


def test_cgroup_v2_smallest_quota_of_the_ancestors_wins(tmp_path):
    root = _fake_root(
        tmp_path,
        "0::/a/b\n",
        V2_MOUNT,
        {
            "sys/fs/cgroup/a/cpu.max": "100000 100000\n",
            "sys/fs/cgroup/a/b/cpu.max": "max 100000\n",
        },
    )
    assert devices.cgroup_cpu_quota(root) == pytest.approx(1.0)
    assert devices.available_cpus(root, affinity=16) == 1


def test_cgroup_v2_without_quota(tmp_path):
    root = _fake_root(tmp_path, "0::/\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert devices.cgroup_cpu_quota(root) is None
    assert devices.available_cpus(root, affinity=6) == 6


def test_cgroup_v2_in_a_cgroup_namespace_reads_the_mount_top(tmp_path):
    # inside a container /proc/self/cgroup can name a path that the container's mount does not show
    root = _fake_root(tmp_path, "0::/docker/abc123\n", V2_MOUNT, {"sys/fs/cgroup/cpu.max": "250000 100000\n"})
    assert devices.available_cpus(root, affinity=64) == 3


def test_cgroup_v1_cfs_quota(tmp_path):
    root = _fake_root(
        tmp_path,
        "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
        V1_MOUNTS,
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert devices.cgroup_cpu_quota(root) == pytest.approx(0.5)
    assert devices.available_cpus(root, affinity=4) == 1  # never below one CPU


def test_cgroup_v1_unlimited_and_missing_files(tmp_path):
    root = _fake_root(
        tmp_path,
        "4:cpu,cpuacct:/\n",
        V1_MOUNTS,
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert devices.cgroup_cpu_quota(root) is None
    assert devices.available_cpus(root, affinity=3) == 3
    assert devices.cgroup_cpu_quota(tmp_path / "nothing-here") is None


def test_v1_quota_of_another_controller_is_ignored(tmp_path):
    # a memory hierarchy holding files named like cpu quota files must not count
    root = _fake_root(
        tmp_path,
        "3:memory:/x\n",
        V1_MOUNTS,
        {
            "sys/fs/cgroup/memory/x/cpu.cfs_quota_us": "10000\n",
            "sys/fs/cgroup/memory/x/cpu.cfs_period_us": "100000\n",
        },
    )
    assert devices.cgroup_cpu_quota(root) is None


def test_available_cpus_on_this_machine_is_within_the_affinity_mask():
    import os

    assert devices.affinity_cpus() == len(os.sched_getaffinity(0))
    assert 1 <= devices.available_cpus() <= devices.affinity_cpus()
