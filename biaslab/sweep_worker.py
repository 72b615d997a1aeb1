"""Run one child of a sweep in a fresh Python process; Dask workers call ``run_child_in_process``.

A Dask worker runs tasks beside its own threads, which draw from Python's global random state.
Keras 3.15 seeds a weight initializer created without a seed from that state
(``keras.src.random.seed_generator.make_default_seed``), so training inside a worker gave other
weights on every run, even with ``keras.utils.set_random_seed``. A fresh process has no such
threads, so a child trained on Dask gets the results of the same configuration trained serially.
The process also keeps a crash of TensorFlow from taking the worker down.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from biaslab.config import RunConfig

# the end of the child's output kept in the error of a child process that died without a report
OUTPUT_TAIL = 3000


def run_child_in_process(config: RunConfig, run_id: str, tracking_uri: str) -> str | None:
    """Run ``biaslab.sweep.run_child`` in a new process; return None on success or the error text."""
    from biaslab import sweep_runs

    payload = pickle.dumps((config, run_id, tracking_uri))
    with tempfile.TemporaryDirectory(prefix="biaslab-child-") as folder:
        error_path = Path(folder) / "error.txt"
        completed = subprocess.run([sys.executable, "-m", "biaslab.sweep_worker", str(error_path)], input=payload,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = completed.stdout.decode(errors="replace")
        sys.stderr.write(output)
        sys.stderr.flush()
        if completed.returncode == 0:
            return None
        if error_path.is_file():
            return error_path.read_text()

    # the process died before it could record the failure, for example killed for memory
    error = f"the child process exited with code {completed.returncode}; its last output:\n{output[-OUTPUT_TAIL:]}"
    sweep_runs.record_failure(run_id, f"the child process exited with code {completed.returncode}")
    return error


def main() -> None:
    """Read (config, run id, tracking URI) as a pickle from stdin, run the child, write any error to argv[1]."""
    from biaslab.sweep import run_child

    error_path = Path(sys.argv[1])
    config, run_id, tracking_uri = pickle.loads(sys.stdin.buffer.read())
    error = run_child(config, run_id, tracking_uri)
    if error is not None:
        error_path.write_text(error)
        sys.exit(1)


if __name__ == "__main__":
    main()
