import sys

from switchover.cli import main

sys.exit(main())
