"""Built-in himari plugins, registered through the same entry points a third-party plugin uses."""
