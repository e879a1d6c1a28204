"""``softmax-dispatch backends``: table and JSON, including failed plugins."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import pytest

from softmax_dispatch import cli


def test_backends_json_lists_every_backend_with_its_origin(fresh_registry, capsys):
    assert cli.main(["backends", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in data["backends"]}
    assert {"numpy", "cupy", "array_api"} <= set(rows)
    numpy_row = rows["numpy"]
    assert numpy_row["available"] is True and numpy_row["devices"] == ["cpu"]
    assert numpy_row["distribution"] == "softmax-dispatch" and numpy_row["reason"] is None
    assert set(numpy_row) >= {"priority", "version", "description"}
    cupy_row = rows["cupy"]
    if not cupy_row["available"]:
        assert cupy_row["devices"] == [] and "CuPy" in cupy_row["reason"]
    assert data["failed_plugins"] == []


def test_backends_table_and_failed_plugins(install_plugins, capsys):
    install_plugins("broken-dist", "0.0.1", {"explodes": "raise ImportError('no libfoo')\n"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the table shows the failure: no warning on top
        assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["backend", "available", "devices", "priority", "distribution"]
    assert max(map(len, out.splitlines())) <= 100
    assert any(line.startswith("numpy ") and " yes " in line for line in out.splitlines())
    assert "plugins that failed to load:" in out
    assert "explodes (broken-dist 0.0.1): import failed: ImportError: no libfoo" in out


def test_backends_json_reports_failed_plugins(install_plugins, capsys):
    install_plugins("broken-dist", "0.0.1", {"explodes": "raise ImportError('no libfoo')\n"})
    cli.main(["backends", "--json"])
    failed = json.loads(capsys.readouterr().out)["failed_plugins"]
    assert failed == [
        {
            "plugin": "explodes",
            "distribution": "broken-dist",
            "version": "0.0.1",
            "error": "import failed: ImportError: no libfoo",
        }
    ]


def test_console_script_and_module_entry_point_work():
    exe = shutil.which("softmax-dispatch")
    commands = [[sys.executable, "-m", "softmax_dispatch", "backends", "--json"]]
    if exe is not None:
        commands.append([exe, "backends", "--json"])
    for command in commands:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        assert "numpy" in {r["name"] for r in json.loads(out)["backends"]}


def test_unknown_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
