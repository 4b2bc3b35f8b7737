"""``python -m vaelab.sweep``: the ``vaelab sweep`` command; the coordinator starts its worker processes this way."""

from vaelab.sweep.coordinator import main

if __name__ == "__main__":
    main()
