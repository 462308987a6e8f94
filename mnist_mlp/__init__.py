"""Study and tune multi-layer perceptrons on MNIST the scikit-learn way.

Importing the package is quick: TensorFlow is loaded only when the estimator
or the pipeline is first used.

>>> import mnist_mlp
>>> mnist_mlp.__version__
'0.1.0'
"""

from __future__ import annotations

from mnist_mlp._lazy import lazy_exports

__version__ = "0.1.0"

# Run from a source checkout without installing it (``python -m mnist_mlp`` in
# the project folder, as `mlflow run` does in the environment it builds from
# python_env.yaml), the study's pipelines/ folder sits beside this package.
# Installed, setuptools maps it to mnist_mlp/pipelines and this finds nothing.
_CHECKOUT = __import__("pathlib").Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pipelines" / "__init__.py").is_file() and (_CHECKOUT / "pyproject.toml").is_file():
    __path__.append(str(_CHECKOUT))  # makes mnist_mlp.pipelines resolve to <checkout>/pipelines

# Public name -> module that defines it, imported on first access (PEP 562)
# so that ``import mnist_mlp`` and the data loaders do not pay for TensorFlow.
_EXPORTS = {
    "MLPClassifier": "mnist_mlp.estimator",
    "make_pipeline": "mnist_mlp.pipeline",
    "ImageFlattener": "mnist_mlp.preprocessing",
    "FixedRangeScaler": "mnist_mlp.preprocessing",
    "load_mnist": "mnist_mlp.data",
    "load_fashion_mnist": "mnist_mlp.data",
    "load_embedded_mnist": "mnist_mlp.data",
    "load_idx_dataset": "mnist_mlp.data",
    "evaluate": "mnist_mlp.evaluation",
    "GridSearchCV": "mnist_mlp.model_selection.search",
    "HalvingGridSearchCV": "mnist_mlp.model_selection.search",
    "HyperbandSearchCV": "mnist_mlp.model_selection.hyperband",
    "TrackedPipeline": "mnist_mlp.pipeline",
    "skops_trusted_types": "mnist_mlp.persistence",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
