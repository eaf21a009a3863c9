"""The web playground: a static page that tries the public API from a browser."""
