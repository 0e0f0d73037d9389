"""The one place fastgd's version is written (read by the build and by ``fastgd.__version__``)."""

__version__ = "0.1.0"
