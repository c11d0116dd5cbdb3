"""The TensorFlow load check, run as a child process: python -m modelsync.tfcheck DIR ...

This is the only module that imports TensorFlow; the daemon runs it in a child so
that TensorFlow's ~500 MB and ~3 s never touch the long-running process. Exit 0:
the SavedModel loads, has every required signature, and answers the smoke input.
Exit 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(prog="modelsync.tfcheck")
    parser.add_argument("directory")
    parser.add_argument("--signature", action="append", default=[])
    parser.add_argument("--smoke-input", default=None, help="JSON {signature: {input: value}}")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf

        loaded = tf.saved_model.load(args.directory)
        missing = [s for s in args.signature if s not in loaded.signatures]
        if missing:
            print(
                f"missing signature(s) {missing}; has {sorted(loaded.signatures)}", file=sys.stderr
            )
            return 1
        for name, inputs in json.loads(args.smoke_input or "{}").items():
            function = loaded.signatures[name]
            specs = function.structured_input_signature[1]
            tensors = {
                key: tf.constant(value, dtype=specs[key].dtype) for key, value in inputs.items()
            }
            function(**tensors)
    except Exception as exc:
        text = " ".join(str(exc).split())[:400]
        print(f"{type(exc).__name__}: {text}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "signatures": sorted(loaded.signatures)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
