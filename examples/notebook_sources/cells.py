"""Building blocks of the notebooks: markdown and code cells, and the set-up cell they share."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str, *, figure: bool = False) -> nbformat.NotebookNode:
    cell = new_code_cell(text.strip("\n"))
    if figure:
        cell.metadata["tags"] = ["figure"]
    return cell


SETUP = """
%matplotlib inline
import os
import time

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

import deepens
from deepens import metrics, plots
from deepens.cache import enable_compilation_cache
from deepens.data import toy

# DEEPENS_QUICK=1 (the tests) shrinks data and epochs so the notebook runs in under a minute.
QUICK = os.environ.get("DEEPENS_QUICK", "0") not in ("", "0")
enable_compilation_cache()  # compiled programs are kept on disk: a second run skips most compilation
print(f"deepens {deepens.__version__}, JAX {jax.__version__} on {jax.devices()[0].platform}; "
      f"{'quick mode (DEEPENS_QUICK=1)' if QUICK else 'full settings'}")
"""
