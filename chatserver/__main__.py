"""`python -m chatserver` is the `chatserver` command."""
from chatserver.cli import main

main()
