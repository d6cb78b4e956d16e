"""INSTRUCTOR ONLY: solutions to the labs. Left out of the installed package (pyproject.toml); run from a clone."""
