"""`python -m tomstress` runs the tom-stress command line."""

from tomstress.cli import main

main()
