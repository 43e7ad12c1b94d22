"""`python -m keybrake.cli …`: the same as the `keybrake` command."""

from keybrake.cli import main

main()
