import sys; from colorprop.cli import main; sys.exit(main())
