"""One process of the two-process test in test_devices.py (run as a script, not collected by pytest).

python distributed_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID OUT.npz
"""

import sys

import numpy as np

import deepens
from deepens import devices


def main() -> None:
    coordinator, processes, process_id, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    devices.use_cpu_cores()  # DEEPENS_CPU_DEVICES from the test, before JAX starts
    assert devices.initialize_distributed(coordinator, processes, process_id)
    import jax

    assert jax.process_count() == processes and len(jax.devices()) > len(jax.local_devices())
    rng = np.random.default_rng(3)
    x = rng.normal(size=(37, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=37)).astype(np.float32)
    ensemble = deepens.fit(
        x,
        y,
        hidden=(8,),
        members=4,
        epochs=3,
        batch_size=8,
        learning_rate=0.01,
        seed=7,
        adversarial="fgsm",
        progress=False,
    )
    prediction = ensemble.predict(x)  # every process holds the whole ensemble and can predict alone
    leaves = jax.tree.leaves(ensemble.params)
    np.savez(
        out,
        history=ensemble.history,
        mean=np.asarray(prediction.mean),
        devices=len(jax.devices()),
        **{f"leaf{i}": np.asarray(leaf) for i, leaf in enumerate(leaves)},
    )


if __name__ == "__main__":
    main()
