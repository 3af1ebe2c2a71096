"""`python -m optimizer.tools.cli`: the meshmap command line."""

from . import main

main()
