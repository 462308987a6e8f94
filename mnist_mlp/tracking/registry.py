"""The Model Registry: the tuned network as a registered version, the best one aliased ``champion``.

``mnist-mlp tune`` (and section 3 of the study) registers its final network
as a new version of ``mnist-mlp`` (``mnist-mlp-<dataset>`` for another
dataset), tagged with its test accuracy and fidelity. The ``champion`` alias
moves to it unless the current champion is better: a full-fidelity network
beats a quick one whatever their scores; between two of the same fidelity the
higher test accuracy wins (a tie goes to the newer). Serve the champion with
``mlflow models serve -m models:/mnist-mlp@champion``.
"""

from __future__ import annotations

from mnist_mlp.tracking import store

__all__ = ["CHAMPION", "register_model", "registered_name"]

#: The alias of the best registered version.
CHAMPION = "champion"


def registered_name(dataset):
    """``mnist-mlp`` for MNIST (its embedded subset included), ``mnist-mlp-<dataset>`` for another dataset."""
    return "mnist-mlp" if dataset in (None, "mnist", "mnist-embedded", "unspecified") else f"mnist-mlp-{dataset}"


def _rank(tags):
    """How a version compares: full fidelity first, then test accuracy."""
    return (tags.get("fidelity") == "full", float(tags.get("test_accuracy", "-inf")))


def register_model(model_id, run_id, *, dataset, test_accuracy, fidelity, description=None, tracking_uri=None,
                   input_contract=None):
    """Register logged model ``model_id`` as a new version; move ``champion`` to it if it is the best.

    Parameters
    ----------
    model_id : str
        An MLflow 3 logged model (``models:/<model_id>``).
    run_id : str
        The run that logged it.
    dataset : str
    test_accuracy : float
    fidelity : {"full", "quick"}
    description : str, default=None
    tracking_uri : str, default=None
    input_contract : mnist_mlp.serving.InputContract, default=None
        What the model takes, written into the version's description and its
        ``input_contract`` tag. The version page's "Schema" lists no inputs on
        purpose (MLflow would enforce a declared input schema by casting, a
        float image in [0, 1] to uint8 zeros); the description says why and
        what the model's own contract checks instead.

    Returns
    -------
    dict
        ``name``, ``version``, ``champion`` (whether the alias now names this
        version) and ``previous_champion`` (its version before, or None).
    """
    from mlflow.exceptions import MlflowException

    client = store.client(tracking_uri or store.resolve_tracking_uri())
    name = registered_name(dataset)
    try:
        store.retrying(client.create_registered_model, name,
                       description="The tuned MLP of mnist-mlp's section 3; the alias 'champion' names the best.")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {"test_accuracy": f"{test_accuracy:.6f}", "fidelity": fidelity, "dataset": dataset or "unspecified"}
    if input_contract is not None:
        tags["input_contract"] = input_contract.describe()
        description = "\n\n".join(filter(None, [description, (
            f"**Inputs**: {input_contract.describe()}, checked by the model itself before it predicts "
            "(mnist_mlp.serving; HTTP 400 with the reason when served). The Schema section lists no inputs on "
            "purpose: MLflow would enforce a declared input schema by casting, a float image to uint8 zeros.")]))
    version = store.retrying(client.create_model_version, name, source=f"models:/{model_id}", run_id=run_id,
                             tags=tags, description=description, model_id=model_id)
    try:
        current = store.retrying(client.get_model_version_by_alias, name, CHAMPION)
    except MlflowException:
        current = None
    champion = current is None or _rank(tags) >= _rank(current.tags)
    if champion:
        store.retrying(client.set_registered_model_alias, name, CHAMPION, version.version)
    return {"name": name, "version": int(version.version), "champion": champion,
            "previous_champion": None if current is None else int(current.version)}
