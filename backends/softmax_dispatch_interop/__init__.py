"""Named backends for array libraries that run on the generic kernels.

Each module here is one plugin, registered through its own entry point, so that
``backend="torch"`` (and ``softmax-dispatch check --backend torch``) can name it and a
missing library shows up as an unavailable backend with a reason. None of them imports
its array library until it is used.
"""
