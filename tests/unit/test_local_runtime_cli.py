"""``crossdock kubernetes local-runtime``: its flags and the refusals it makes before starting."""

from __future__ import annotations

import pytest

from crossdock.cli.kubernetes_command import build_parser, kubernetes_commands


def test_group_offers_local_runtime_with_its_flags() -> None:
    group = kubernetes_commands()
    assert group.name == "kubernetes"
    (command,) = [sub for sub in group.subcommands if sub.name == "local-runtime"]
    flags = {flag for arg in command.args for flag in arg.flags}
    assert {"--port", "--host", "--node-name", "--api-only", "--agent-only", "--kubeconfig-out"} <= flags


def test_parsed_arguments_reach_the_command() -> None:
    args = build_parser().parse_args(["local-runtime", "--port", "0", "--api-only", "--kubeconfig-out", "kc"])
    assert (args.port, args.api_only, args.agent_only, args.kubeconfig_out) == (0, True, False, "kc")


def test_api_only_and_agent_only_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["local-runtime", "--api-only", "--agent-only"])
    assert args.func(args) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_agent_only_needs_an_api_server(monkeypatch: pytest.MonkeyPatch, tmp_path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    args = build_parser().parse_args(["local-runtime", "--agent-only", "--state-dir", str(tmp_path)])
    assert args.func(args) == 2
    assert "--kubeconfig" in capsys.readouterr().err
