import sys

from bench.variants.runner import main

sys.exit(main())
