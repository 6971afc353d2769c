"""Packaging glue that pyproject.toml cannot express: kernels/ ships inside the wheel as clnet.kernels."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["clnet", "clnet.*"]) + ["clnet.kernels"],
    package_dir={"clnet.kernels": "kernels"},
)
