"""Built-in models plugins, one module each, declared in the `himari` entry-point group."""
