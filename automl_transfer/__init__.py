"""automl_transfer: Transfer Neural AutoML.

An RL controller designs wide-and-deep text classifiers, learns from many tasks at once and
transfers what it learned to new tasks. See README.md and docs/method.md.
"""
__version__ = "0.1.0"
