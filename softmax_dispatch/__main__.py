"""``python -m softmax_dispatch`` is the ``softmax-dispatch`` command."""

import sys

from .cli import main

sys.exit(main())
