import sys

from flatarch.cli import main

sys.exit(main())
