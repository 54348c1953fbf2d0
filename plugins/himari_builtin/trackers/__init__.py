"""Built-in trackers plugins, one module each, declared in the `himari` entry-point group."""
