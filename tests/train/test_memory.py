import json
import os
import subprocess
import sys

import pytest

from offrl.train import memory

# A 64 MB tensor allocated, written and freed ten times: the page faults of the loop.
FAULTS = """
import json, resource, torch
from offrl.train.memory import keep_freed_memory
applied = keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(16 << 20).fill_(1.0)  # the first use maps it in either way
start = faults()
for _ in range(10):
    torch.empty(16 << 20).fill_(1.0)
print(json.dumps({"applied": applied, "faults": faults() - start}))
"""


def run_faults(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != memory.OPT_OUT}
    done = subprocess.run([sys.executable, "-c", FAULTS], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not memory._is_glibc(), reason="glibc's allocator only")
def test_freed_memory_is_reused_without_faulting_it_in_again():
    kept = run_faults()
    default = run_faults(**{memory.OPT_OUT: "0"})
    assert kept["applied"] and not default["applied"]
    # glibc's default maps the 64 MB block fresh each time: 16,384 pages of 4 KiB, faulted in ten times over;
    # kept, the block is reused (at most one more is mapped while the heap settles)
    assert default["faults"] > 10 * 15_000
    assert kept["faults"] <= 2 * 16_384 + 1_000


@pytest.mark.parametrize(
    "env",
    [{memory.OPT_OUT: "0"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"},
     {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}],
)
def test_the_users_allocator_settings_and_the_opt_out_stand(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert memory._tune() is False  # returns before calling mallopt
