"""What the site generates from the repository instead of repeating it.

The mkdocs hook (`sitegen/hooks.py`) calls these at build time:

- `citations`: `{test: ...}` and `{bench: ...}` in a page become a link to the test or the
  measured value; a citation of a test or a bench key that does not exist fails the build.
- `twins`: each antipattern, rendered as its difference from its chapter.

Standard library only: `nox -s docs` installs nothing but mkdocs and its extensions.
"""
