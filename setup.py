"""Packaging for the credit exchange node. Protobuf code is generated at build time."""
from __future__ import annotations

import pathlib
import runpy

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.command.egg_info import egg_info

ROOT = pathlib.Path(__file__).resolve().parent


def _generate() -> None:
    runpy.run_path(str(ROOT / "scripts" / "gen_protos"))["generate"](ROOT)


class _BuildPy(build_py):
    def run(self) -> None:
        _generate()
        super().run()


class _Develop(develop):
    def run(self) -> None:
        _generate()
        super().run()


class _EggInfo(egg_info):
    def run(self) -> None:
        _generate()
        super().run()


setup(
    name="credit-node",
    version="0.1.0",
    description="Federated exchange node for public credit information",
    python_requires=">=3.11",
    packages=find_packages(include=["node", "node.*", "adapters", "adapters.*"]),
    package_data={"node": ["py.typed", "_generated/*.pyi", "store/migrations/*.ini",
                           "store/migrations/*.mako", "store/migrations/versions/*.py"],
                  "adapters": ["py.typed"]},
    include_package_data=True,
    install_requires=[
        "pika>=1.3",
        "grpcio>=1.60",
        "grpcio-tools>=1.60",
        "grpcio-health-checking>=1.60",
        "grpcio-reflection>=1.60",
        "protobuf>=4.25",
        "sqlalchemy>=2.0",
        "alembic>=1.13",
        "psycopg[binary]>=3.1",
        "pymysql>=1.1",
        "cryptography>=42",
        "pyyaml>=6",
        "tenacity>=8.2",
        "click>=8.1",
        "openpyxl>=3.1",
        "prometheus-client>=0.19",
    ],
    extras_require={
        "dev": ["pytest>=8", "ruff>=0.5", "mypy>=1.10", "types-PyYAML", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["credit-node=node.cli:main"]},
    cmdclass={"build_py": _BuildPy, "develop": _Develop, "egg_info": _EggInfo},
)
