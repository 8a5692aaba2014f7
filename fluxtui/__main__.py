import sys

from fluxtui.cli import main

sys.exit(main())
