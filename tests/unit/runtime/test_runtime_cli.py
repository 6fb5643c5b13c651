"""The `naaice runtime` commands: every option has its NAAICE_<FLAG> env twin."""

from __future__ import annotations

import typer.main

from naa_runtime.cli import app


def test_every_option_of_every_runtime_command_has_its_env_twin() -> None:
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    assert {"serve", "flash", "scrub", "health", "sensors"} <= set(commands)
    checked = 0
    for command in commands.values():
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            flag = max(param.opts, key=len)
            expected = "NAAICE_" + flag.lstrip("-").upper().replace("-", "_")
            assert param.envvar == expected, f"{command.name} {flag}: envvar {param.envvar}"
            checked += 1
    assert checked >= 20
