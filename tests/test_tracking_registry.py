"""The Model Registry: each tuned network a version, the best one aliased champion."""

from __future__ import annotations

import pytest

from mnist_mlp.tracking import register_model, registered_name


def _logged_model(client, name="model"):
    run = client.create_run("0")
    model = client.create_logged_model("0", name=name, source_run_id=run.info.run_id)
    client.finalize_logged_model(model.model_id, "READY")
    return model.model_id, run.info.run_id


@pytest.mark.parametrize("dataset, name", [("mnist", "mnist-mlp"), ("mnist-embedded", "mnist-mlp"),
                                           ("fashion-mnist", "mnist-mlp-fashion-mnist")])
def test_the_registered_name_follows_the_dataset(dataset, name):
    assert registered_name(dataset) == name


def test_the_champion_is_full_fidelity_first_then_the_most_accurate(tracked):
    def register(accuracy, fidelity):
        return register_model(*_logged_model(tracked), dataset="mnist", test_accuracy=accuracy, fidelity=fidelity)

    assert register(0.90, "quick") == {"name": "mnist-mlp", "version": 1, "champion": True, "previous_champion": None}
    assert register(0.80, "quick")["champion"] is False  # worse, same fidelity
    assert register(0.90, "quick")["champion"] is True  # a tie goes to the newer
    assert register(0.50, "full") == {"name": "mnist-mlp", "version": 4, "champion": True, "previous_champion": 3}
    assert register(0.99, "quick")["champion"] is False  # a quick run never displaces a full one
    assert register(0.60, "full")["champion"] is True
    champion = tracked.get_model_version_by_alias("mnist-mlp", "champion")
    assert int(champion.version) == 6 and champion.tags == {"test_accuracy": "0.600000", "fidelity": "full",
                                                          "dataset": "mnist"}


def test_a_version_says_what_inputs_its_model_takes(tracked):
    """The version page's Schema lists no inputs (on purpose); its description and a tag say what
    the model's own contract accepts."""
    import numpy as np

    from mnist_mlp.serving import InputContract

    contract = InputContract.from_training(np.zeros((5, 28, 28), np.uint8))
    registered = register_model(*_logged_model(tracked), dataset="mnist", test_accuracy=0.9, fidelity="quick",
                                description="final network", input_contract=contract)
    version = tracked.get_model_version("mnist-mlp", registered["version"])
    assert version.tags["input_contract"] == ("a batch of shape (n, 28, 28), (n, 28, 28, 1) or (n, 784), "
                                              "uint8 whole numbers 0..255")
    assert version.description.startswith("final network\n\n**Inputs**: a batch of shape (n, 28, 28)")
    assert "lists no inputs on purpose" in version.description
