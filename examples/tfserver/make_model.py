"""Build a tiny SavedModel: y = x * weight, with a `serving_default` signature.

    python -m examples.tfserver.make_model OUT_DIR:2.0 [OUT_DIR:WEIGHT ...]

No downloads: the model is made here, in a few kilobytes, for the demo and tests.
"""

from __future__ import annotations

import argparse
import os


def build(out_dir: str, weight: float) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    class Scale(tf.Module):  # type: ignore[misc]
        def __init__(self, value: float) -> None:
            super().__init__()
            self.weight = tf.Variable(value, dtype=tf.float32, name="weight")

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])  # type: ignore[untyped-decorator]
        def serve(self, x: object) -> dict[str, object]:
            return {"y": x * self.weight}

    module = Scale(weight)
    tf.saved_model.save(module, out_dir, signatures={"serving_default": module.serve})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", metavar="OUT_DIR:WEIGHT")
    args = parser.parse_args()
    for spec in args.models:  # one TensorFlow import for all of them
        out_dir, _, weight = spec.rpartition(":")
        build(out_dir, float(weight))


if __name__ == "__main__":
    main()
