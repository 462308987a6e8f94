"""The study's experiments, one module per section (see ``mnist_mlp.study``).

Installed as ``mnist_mlp.pipelines`` (pyproject.toml maps this folder there).

Each module defines ``TITLE``, ``PUBLISHED`` (the study's figures, matched to
grid points; for a section beyond the study, another paper's, named by
``PUBLISHED_BY``) and ``make_search(epochs=..., seeds=...)`` returning an
unfitted search over ``mnist_mlp.make_pipeline``.
"""
