import sys

from metricsflow.cli import main

sys.exit(main())
