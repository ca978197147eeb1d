import sys

from ehrmind.cli import main

sys.exit(main())
