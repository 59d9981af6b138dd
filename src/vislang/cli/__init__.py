"""Front doors: the ``vislang`` command line."""
