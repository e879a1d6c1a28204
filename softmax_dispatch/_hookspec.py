"""The one hook a softmax_dispatch plugin implements."""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from ._backend import Backend

PROJECT = "softmax_dispatch"
#: The entry-point group plugins declare themselves in.
ENTRY_POINT_GROUP = "softmax_dispatch"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def softmax_dispatch_backends() -> Iterable[Backend]:  # type: ignore[empty-body]
    """Yield the backends this plugin provides.

    This hook must not import the array library: do that lazily inside
    ``Backend.namespace`` and ``Backend.devices``, so that importing softmax_dispatch and
    listing backends stays cheap, and a missing library shows up as an unavailable
    backend with a reason rather than an ImportError.

    A complete plugin is one module and one entry point. ``my_plugin.py``::

        from softmax_dispatch import Backend, hookimpl


        def _namespace():
            import array_api_strict

            return array_api_strict


        @hookimpl
        def softmax_dispatch_backends():
            yield Backend(
                name="my_strict",
                owns=lambda x: type(x).__module__.startswith("array_api_strict"),
                namespace=_namespace,
                priority=10,
            )

    and in the plugin distribution's ``pyproject.toml``::

        [project.entry-points.softmax_dispatch]
        my_strict = "my_plugin"

    ``softmax-dispatch backends`` then lists ``my_strict`` with its distribution and
    version, and ``softmax-dispatch check --backend my_strict`` runs the conformance
    suite on it.
    """
