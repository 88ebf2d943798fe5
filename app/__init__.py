"""The application layer: the `factory` command line, the demo corpus and the build report; it may import every
other layer, and none imports it."""
