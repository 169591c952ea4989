import sys
from colorprop.cli.main import main

sys.exit(main())
