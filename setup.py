# setuptools needs this shim only to run the cffi build step declared here;
# all other metadata lives in pyproject.toml.
#
# cffi compiles gkcp._core against CPython's limited API (Py_LIMITED_API, the
# ".abi3.so" name), so one wheel serves every CPython from 3.9 on: the wheel
# is tagged cp39-abi3 to say so.
from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"],
      options={"bdist_wheel": {"py_limited_api": "cp39"}})
