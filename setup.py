"""The package list, found rather than written out, so a new folder cannot be left out of the wheel.

Every package under qreport/, and the top-level templates/ folder with every folder below it, shipped as
qreport.templates. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, find_packages, setup

TEMPLATES = ["qreport.templates"] + [f"qreport.templates.{name}" for name in
                                     find_namespace_packages("templates", exclude=["*__pycache__*"])]

setup(
    packages=find_packages(include=["qreport", "qreport.*"]) + TEMPLATES,
    package_dir={"qreport.templates": "templates"},
)
