# setuptools needs this shim only to run the cffi build step declared here;
# all metadata lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"])
