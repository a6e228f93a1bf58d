import sys

from dockercoins.cli import main

sys.exit(main())
