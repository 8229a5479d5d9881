"""Files mapped by other processes are hostile input: classifying a damaged ELF raises nothing but
NotTlsError (or OSError), and hook points stay inside the file. Damaged copies of real files: the system
libssl and a small Go program."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecaptureq.sources.tls.discover import NotTlsError, classify
from ecaptureq.sources.tls.locate import libssl_from_ldconfig

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("DISCOVER_FUZZ_EXAMPLES", "150"))


def _originals(tmp: Path) -> list[bytes]:
    out = []
    system = libssl_from_ldconfig()
    if system:
        out.append(Path(system).read_bytes())
    if shutil.which("go"):
        (tmp / "main.go").write_text(
            'package main\nimport "crypto/tls"\nfunc main() { tls.Client(nil, nil) }\n'
        )
        env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(tmp / "cache"), "GOPATH": str(tmp / "gp")}
        subprocess.run(
            ["go", "build", "-ldflags=-s -w", "-o", "prog", "main.go"], cwd=tmp, env=env, check=True
        )
        out.append((tmp / "prog").read_bytes())
    return out


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    found = _originals(tmp_path_factory.mktemp("hostile"))
    if not found:
        pytest.skip("neither a system libssl nor go to build a program")
    return found


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_elf_is_not_tls_or_classified(
    originals: list[bytes], tmp_path: Path, data: st.DataObject
) -> None:
    original = originals[data.draw(st.integers(0, len(originals) - 1))]  # an index: short failure reports
    damaged = bytearray(original)
    # Damage where parsers look: the ELF and section headers, the tables in between, or anywhere.
    shoff = int.from_bytes(original[0x28:0x30], "little")
    region = data.draw(st.sampled_from(["header", "sections", "tables", "anywhere", "truncate"]))
    if region == "truncate":
        damaged = damaged[: data.draw(st.integers(0, len(original) - 1))]
    else:
        lo, hi = {
            "header": (0, 64),
            "sections": (shoff, len(original)),
            # Go's .gopclntab and .go.buildinfo, a library's symbol tables: the middle of the file.
            "tables": (len(original) // 4, 3 * len(original) // 4),
            "anywhere": (0, len(original)),
        }[region]
        for _ in range(data.draw(st.integers(1, 16))):
            at = data.draw(st.integers(lo, max(lo, hi - 1)))
            damaged[at] = data.draw(st.integers(0, 255))
    path = tmp_path / "damaged"
    path.write_bytes(bytes(damaged))
    try:
        found = classify(str(path), "/usr/lib/x86_64-linux-gnu/libssl.so.3", executable=True)
    except NotTlsError:
        return
    assert found.kind  # classified anyway: a kind, with its hook points in the file
    assert all(0 <= offset < len(damaged) for offset in found.offsets.values())
