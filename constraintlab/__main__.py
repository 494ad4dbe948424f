import sys

from constraintlab.cli.main import main

sys.exit(main())
