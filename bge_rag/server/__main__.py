"""``python -m bge_rag.server serve --model ...``: the same command as ``bge-rag serve``."""

import sys

from .command import main

sys.exit(main())
