"""``python -m megadrive``: the same command as the ``megadrive`` console script."""

from megadrive.main import main

main()
