"""``python -m bge_rag ...``: the same command as ``bge-rag ...``."""

import sys

from .cli import main

sys.exit(main())
