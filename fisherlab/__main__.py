"""``python -m fisherlab`` runs the CLI."""

import sys

from fisherlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
