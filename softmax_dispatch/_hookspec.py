"""The one hook a softmax_dispatch plugin implements."""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from ._backend import Backend

PROJECT = "softmax_dispatch"
#: The entry-point group plugins declare themselves in.
ENTRY_POINT_GROUP = "softmax_dispatch"

hookspec = pluggy.HookspecMarker(PROJECT)


class _HookimplMarker(pluggy.HookimplMarker):  # type: ignore[misc]  # final in pluggy's stubs
    """Mark a function as a softmax_dispatch hook implementation.

    The decorator a plugin puts on its ``softmax_dispatch_backends`` function (or
    method): the plugin manager finds only functions marked with it. Use it bare,
    ``@hookimpl``, or with options, ``@hookimpl(tryfirst=True)``. It is pluggy's
    ``HookimplMarker`` for the project ``"softmax_dispatch"`` (this subclass only carries
    this documentation).

    Parameters
    ----------
    function : callable, optional
        The hook implementation to mark, when used bare (``@hookimpl``); omitted when
        called with options (``@hookimpl(...)``), which returns the decorator.
    hookwrapper : bool, default: False
        Whether the function is an old-style pluggy hook wrapper (unused by
        softmax_dispatch).
    optionalhook : bool, default: False
        Whether a missing hook specification of this name is acceptable.
    tryfirst : bool, default: False
        Whether to call this implementation as early as possible.
    trylast : bool, default: False
        Whether to call this implementation as late as possible.
    specname : str, optional
        The hook's name, when the function has another name.
    wrapper : bool, default: False
        Whether the function is a new-style pluggy hook wrapper (unused by
        softmax_dispatch).

    Returns
    -------
    callable
        The marked function itself (``@hookimpl``), or a decorator that marks one
        (``@hookimpl(...)``).

    See Also
    --------
    softmax_dispatch._hookspec.softmax_dispatch_backends : The hook to implement.
    register : Register a plugin at run time.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy, softmax_dispatch as sd
    >>> class MyPlugin:
    ...     @sd.hookimpl
    ...     def softmax_dispatch_backends(self):
    ...         yield sd.Backend(name="my_numpy", owns=array_api_compat.is_numpy_array,
    ...                          namespace=lambda: array_api_compat.numpy)
    >>> handle = sd.register(MyPlugin())
    >>> sd.softmax(np.array([0.0, 0.0]), backend="my_numpy")
    array([0.5, 0.5])
    >>> sd.unregister(handle)
    """

    __slots__ = ()


hookimpl = _HookimplMarker(PROJECT)


@hookspec
def softmax_dispatch_backends() -> Iterable[Backend]:  # type: ignore[empty-body]
    """Yield the backends this plugin provides.

    The one hook a plugin implements (decorated with `hookimpl`). It is called once, when
    the plugins load on first use (or by `register`); every `Backend` it yields joins the
    registry under its name. A hook that raises, or yields anything other than a `Backend`,
    or a name another plugin took, is reported as a `PluginFailure` and skipped.

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

    Returns
    -------
    Iterable[Backend]
        The plugin's backends; usually the hook is a generator that yields them.

    See Also
    --------
    softmax_dispatch.Backend : What the hook yields.
    softmax_dispatch.hookimpl : The decorator that marks the implementation.
    softmax_dispatch.register : Register a plugin at run time instead of through an entry
        point.

    Examples
    --------
    The same plugin, registered at run time (`register` takes a module or any object with
    the hook):

    >>> import array_api_strict as xp
    >>> import softmax_dispatch as sd
    >>> class MyPlugin:
    ...     @sd.hookimpl
    ...     def softmax_dispatch_backends(self):
    ...         yield sd.Backend(
    ...             name="my_strict",
    ...             owns=lambda x: type(x).__module__.startswith("array_api_strict"),
    ...             namespace=lambda: xp,
    ...             priority=10,
    ...         )
    >>> handle = sd.register(MyPlugin())
    >>> sd.get_backend("my_strict").priority
    10
    >>> sd.softmax(xp.asarray([0.0, 0.0]), backend="my_strict")
    Array([0.5, 0.5], dtype=array_api_strict.float64)
    >>> sd.unregister(handle)
    """
