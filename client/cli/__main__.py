"""`python -m imagesim.client.cli`: the `imagesim` command."""

from imagesim.client.cli import main

main()
