"""Built-in preprocessing plugins, one module each, declared in the `himari` entry-point group."""
