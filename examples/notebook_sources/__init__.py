"""The cells of each notebook in examples/, one module per notebook; examples/make_notebooks.py writes them."""
