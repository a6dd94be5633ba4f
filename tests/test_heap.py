"""The heap trim: glibc's malloc_trim is found here and calling it is harmless."""

from __future__ import annotations

from agents.heap import malloc_trim


def test_malloc_trim_is_found_on_this_glibc_machine_and_runs() -> None:
    trim = malloc_trim()
    assert trim is not None  # Debian: glibc
    blocks = [bytearray(1 << 20) for _ in range(64)]  # 64 MiB outside pymalloc
    del blocks
    trim()  # returns the freed pages; must not raise
