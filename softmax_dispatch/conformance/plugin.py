"""pytest plugin (``pytest11`` entry point): the conformance suite's command-line options.

Registered in every pytest run of an environment where softmax-dispatch is installed, so
it adds two options, both prefixed, and nothing else — no fixture, marker, hook or
setting that could clash with another project's conftest or plugins::

    pytest --pyargs softmax_dispatch.conformance --sd-backend NAME --sd-device DEV

(``softmax-dispatch check --backend NAME --device DEV`` is the same run.)
"""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("softmax_dispatch", "softmax-dispatch conformance suite")
    group.addoption(
        "--sd-backend",
        action="append",
        default=[],
        dest="sd_backend",
        metavar="NAME",
        help="softmax-dispatch backend to check (repeatable); default: every available one",
    )
    group.addoption(
        "--sd-device",
        default=None,
        dest="sd_device",
        metavar="DEV",
        help="only this device, by name as `softmax-dispatch backends` shows it (cuda:1, cpu)",
    )
