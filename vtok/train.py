"""`python -m vtok.train [--] [--dryrun] experiment=NAME key=value ...`: NVIDIA's training command, run by vtok.

The command itself is vtok.cli.train (also `vtok train`); the work is vtok.training.train(config).
"""

import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
