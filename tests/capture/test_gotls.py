"""Go crypto/tls hook points from .gopclntab, checked against the Go toolchain's own symbol table."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from ecaptureq.sources.tls.discover import KIND_GO, classify
from ecaptureq.sources.tls.gotls import GO_FUNCTIONS, go_tls, pclntab_functions, vaddr_to_offset

pytestmark = pytest.mark.e2e

PROGRAM = """
package main

import (
	"crypto/tls"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", os.Args[1], &tls.Config{})
	if err == nil {
		c.Write([]byte("x"))
		c.Read(make([]byte, 1))
	}
}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Go program using crypto/tls, built plain, with -ldflags=-s -w and as PIE by Debian's golang-go."""
    if not shutil.which("go"):
        pytest.skip("go not installed (scripts/setup-test installs golang-go)")
    d = tmp_path_factory.mktemp("gotls")
    (d / "main.go").write_text(PROGRAM)
    env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(d / "cache"), "GOPATH": str(d / "gopath")}
    out = {"plain": d / "plain", "stripped": d / "stripped", "pie": d / "pie"}
    builds = (
        ([], out["plain"]),
        (["-ldflags=-s -w"], out["stripped"]),
        (["-buildmode=pie"], out["pie"]),
    )
    for flags, path in builds:
        subprocess.run(
            ["go", "build", *flags, "-o", str(path), "main.go"], cwd=d, env=env, check=True, timeout=300
        )
    return out


def _go_nm(binary: Path) -> dict[str, int]:
    out = subprocess.run(["go", "tool", "nm", str(binary)], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[2] in GO_FUNCTIONS:
            found[parts[2]] = int(parts[0], 16)
    return found


def test_pclntab_matches_go_tool_nm(built: dict[str, Path]) -> None:
    for flavour in (
        "plain",
        "stripped",
        "pie",
    ):  # PIE: no .gopclntab section, the table is found by its header
        expected = _go_nm(built["plain" if flavour == "stripped" else flavour])
        assert set(expected) == set(GO_FUNCTIONS)
        with built[flavour].open("rb") as f:
            elf = ELFFile(f)
            assert (elf.get_section_by_name(".symtab") is None) == (flavour == "stripped")
            found = pclntab_functions(elf, GO_FUNCTIONS)
            assert {name: addr for name, (addr, _size) in found.items()} == expected


def test_probes_sit_on_the_entry_and_on_ret_instructions(built: dict[str, Path]) -> None:
    for flavour in ("plain", "stripped", "pie"):
        data = built[flavour].read_bytes()
        with built[flavour].open("rb") as f:
            elf = ELFFile(f)
            hooks = go_tls(elf)
            assert hooks is not None and hooks.version.startswith("go1.")
            assert hooks.stripped == (flavour == "stripped")
            symbols = _go_nm(built["plain" if flavour == "stripped" else flavour])
            entries = {name: vaddr_to_offset(elf, addr) for name, addr in symbols.items()}
        for fn in hooks.functions:
            assert fn.entry == entries[fn.name]
            assert fn.returns and all(data[offset] == 0xC3 for offset in fn.returns)  # RET
            assert all(fn.entry < offset for offset in fn.returns)
        target = classify(str(built[flavour]))
        assert target.kind == KIND_GO and target.go == hooks
