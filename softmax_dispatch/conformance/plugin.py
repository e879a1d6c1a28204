"""pytest plugin (``pytest11`` entry point): the suite's command-line options.

Registered globally so that ``pytest --pyargs softmax_dispatch.conformance --backend X``
works; it adds options and nothing else. If another plugin already owns ``--backend`` or
``--device``, only the ``--sd-backend`` / ``--sd-device`` spellings are added.
"""

from __future__ import annotations

from typing import Any


def _add(group: Any, names: tuple[str, ...], **kwargs: Any) -> None:
    try:
        group.addoption(*names, **kwargs)
    except ValueError:  # a name is taken by another plugin: keep our prefixed one
        group.addoption(names[-1], **kwargs)


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("softmax_dispatch", "softmax-dispatch conformance suite")
    _add(
        group,
        ("--backend", "--sd-backend"),
        action="append",
        default=[],
        dest="sd_backend",
        metavar="NAME",
        help="softmax-dispatch backend to check (repeatable); default: every available one",
    )
    _add(
        group,
        ("--device", "--sd-device"),
        default=None,
        dest="sd_device",
        metavar="DEV",
        help="only this device, by name as `softmax-dispatch backends` shows it (cuda:1, cpu)",
    )
