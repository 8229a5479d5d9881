"""The deployment files in deploy/: each checked by the tool that would run it, where it runs here.

The nats-server configuration is the one every fleet test runs (fleet_support.py); here the systemd unit
goes through ``systemd-analyze verify`` and both the unit's and the DaemonSet's command lines through the
``ecaptureq`` argument parser itself.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from fleet_support import REPO

from ecaptureq.cli.main import build_parser

UNIT = REPO / "deploy" / "ecaptureq-agent.service"
DAEMONSET = REPO / "deploy" / "ecaptureq-agent-daemonset.yaml"


def _agent_args(argv: list[str]) -> object:
    """Parse a command line as ``ecaptureq`` would (SystemExit on any option it does not know)."""
    assert argv[0].endswith("ecaptureq"), argv
    return build_parser().parse_args(argv[1:])


@pytest.mark.e2e
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    exe = shutil.which("ecaptureq")
    if tool is None or exe is None:
        pytest.skip("systemd-analyze or an installed ecaptureq script is missing")
    # the unit as shipped, with ExecStart pointing at this installation's script
    text = UNIT.read_text().replace("/usr/local/bin/ecaptureq", exe)
    unit = tmp_path / "ecaptureq-agent.service"
    unit.write_text(text)
    done = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_systemd_unit_command_line_is_the_agents() -> None:
    exec_start = re.search(r"^ExecStart=(.+)$", UNIT.read_text(), re.MULTILINE)
    assert exec_start is not None
    line = (
        exec_start.group(1).replace("${ECAPTUREQ_NATS_URL}", "tls://nats.example:4222").replace("%l", "web-1")
    )
    args = _agent_args(shlex.split(line))
    assert vars(args)["command"] == "agent" and vars(args)["tls"] and vars(args)["node"] == "web-1"
    # what the unit reads from its EnvironmentFile is what the agent reads
    assert "ECAPTUREQ_NATS_PASSWORD" in UNIT.read_text()
    from ecaptureq.cli.fleet import PASSWORD_ENV

    assert PASSWORD_ENV == "ECAPTUREQ_NATS_PASSWORD"


def test_daemonset_parses_and_runs_the_agent() -> None:
    docs = [d for d in yaml.safe_load_all(DAEMONSET.read_text()) if d]
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    assert ds["apiVersion"] == "apps/v1"
    spec = ds["spec"]["template"]["spec"]
    assert (
        ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    )
    assert spec["hostPID"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    env = {e["name"]: e for e in container["env"]}
    argv = [*container["command"], *container["args"]]
    # every $(VAR) the command line uses is defined in env (Kubernetes leaves unknown ones as they are)
    used = set(re.findall(r"\$\((\w+)\)", " ".join(argv)))
    assert used <= env.keys(), used - env.keys()
    values = {"NODE_NAME": "worker-1", "NATS_URL": env["NATS_URL"].get("value", "nats://x:4222")}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: values[m.group(1)], a) for a in argv]
    args = vars(_agent_args(argv))
    assert args["command"] == "agent" and args["tls"] and args["node"] == "worker-1"
    # the files it names are on volumes the pod mounts
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"] for v in spec["volumes"]}
    assert set(mounts.values()) <= volumes
    for path in (args["creds"], args["nats_ca"], str(args["spool"])):
        assert any(path.startswith(m + "/") for m in mounts), path
    # it has time to drain its spool when stopped
    assert spec["terminationGracePeriodSeconds"] > args["drain_timeout"]


def test_nats_config_locks_down_agents_and_readers() -> None:
    """The configuration the tests run: agents publish only under their node, readers publish no data."""
    text = (REPO / "deploy" / "nats-server.conf").read_text()
    for node in ("node-1", "node-2", "node-3"):
        block = re.search(rf"user: {node},.*?\n      }}", text, re.DOTALL)
        assert block is not None
        assert f'publish: {{ allow: ["ecaptureq.{node}.>"] }}' in block.group(0)
    for user in ("collector", "reader"):
        block = re.search(rf"user: {user},.*?\n      }}", text, re.DOTALL)
        assert block is not None and '"ecaptureq.' not in block.group(0)
