"""Package metadata for automl_transfer: Transfer Neural AutoML for text classifiers."""
from setuptools import find_packages, setup

setup(
    name="automl_transfer",
    version="0.1.0",
    description="Transfer Neural AutoML: a multitask RL controller that designs classifiers "
    "and transfers what it learned to new tasks.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["automl_transfer", "automl_transfer.*"]),
    py_modules=["run_experiment"],
    include_package_data=True,
    # The shipped controllers (SavedModel, JSON description, card): a plain `pip install .` too.
    package_data={"automl_transfer.pretrained": ["*/*.json", "*/*.pb", "*/variables/*"]},
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tensorflow-hub>=0.16",
        "tensorflow-text>=2.16,<2.22",
        "keras>=3.0",
        "numpy>=1.24",
        "absl-py>=1.0",
        "pyyaml>=6.0",
        "gensim>=4.3",
        "matplotlib>=3.7",
        "tensorboard>=2.16",
        "optuna>=3.0",
    ],
    extras_require={
        "ray": ["ray>=2.9"],
        # CI tests the Ray executor for real; xdist: the suite on both cores
        "test": ["pytest>=7", "pytest-xdist>=3", "ray>=2.9"],
        "bench": ["tf-keras>=2.16,<2.22", "scikit-learn>=1.3"],
    },
    entry_points={"console_scripts": ["automl-transfer=run_experiment:run"]},
)
