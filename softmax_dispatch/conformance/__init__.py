"""The shared conformance suite: every backend, every device, every floating dtype.

Run it with either of::

    softmax-dispatch check [--backend NAME]... [--device DEV] [--json] [-- PYTEST ARGS]
    pytest --pyargs softmax_dispatch.conformance [--sd-backend NAME]... [--sd-device DEV]

(needs ``pip install 'softmax-dispatch[check]'``). A backend's own repository can reuse
the fixtures (``target``, ``dtype``, ``xp``) with
``pytest_plugins = ["softmax_dispatch.conformance.fixtures"]``; see
``docs/conformance.md``.
"""
