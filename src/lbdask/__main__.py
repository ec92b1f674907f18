import sys

from lbdask.cli import main

if __name__ == "__main__":  # Dask's spawned worker processes re-import this module
    sys.exit(main())
