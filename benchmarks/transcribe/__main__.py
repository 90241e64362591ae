import sys

from benchmarks.transcribe.run import main

sys.exit(main())
