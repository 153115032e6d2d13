"""glibc keeps freed tensor memory for the next training step (gridyolo.allocator)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)

# minor page faults of one training step (activations of 64 MiB and more, as at 256 px, batch 16), best of 3
STEP_FAULTS = """
import resource, torch
from gridyolo.allocator import keep_freed_memory
applied = keep_freed_memory()
model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU6(),
                            torch.nn.Conv2d(32, 8, 3, padding=1))
x = torch.rand(8, 3, 256, 256)
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(x).square().mean().backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, min(faults[1:]))
"""


def step_faults(keep: str) -> tuple[str, int]:
    env = {**os.environ, "GRIDYOLO_KEEP_FREED_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", STEP_FAULTS], env=env, capture_output=True, text=True, check=True)
    applied, count = out.stdout.split()
    return applied, int(count)


def test_a_training_step_reuses_freed_memory_instead_of_faulting_it_in_again() -> None:
    applied, kept = step_faults("1")
    not_applied, returned = step_faults("0")
    assert (applied, not_applied) == ("True", "False")
    one_map = 8 * 32 * 256 * 256 * 4 // 4096  # pages of one 32-channel activation
    assert returned >= 2 * one_map  # glibc maps and unmaps each large block: its pages fault in every step
    assert kept <= returned / 4
