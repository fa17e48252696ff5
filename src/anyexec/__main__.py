import sys

from anyexec.cli import main

sys.exit(main())
