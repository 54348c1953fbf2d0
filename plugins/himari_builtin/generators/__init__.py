"""Built-in synthetic-data generators (``himari data augment --method NAME``)."""
