import sys

from bench.latency.budget import main

sys.exit(main())
