"""The Python-backend model ``segrt deploy triton --platform python`` writes as ``1/model.py``.

Triton's Python backend loads this file in its stub process and calls ``TritonPythonModel``. It
runs the bundle's ONNX (copied next to it) with ONNX Runtime on the CPU. With dynamic batching
Triton hands ``execute`` several requests at once: when the graph has a batch axis they run as
one batch, and each request gets back exactly its own rows. ``triton_python_backend_utils`` exists
only inside the server, so it is imported there (this module stays importable anywhere).
"""
import json
import os
import sys

# The backend stub embeds Python in isolated mode, which ignores PYTHONPATH: honour it here, so the
# server's environment decides where numpy and onnxruntime come from.
for _entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _entry and _entry not in sys.path:
        sys.path.insert(0, _entry)

import numpy as np  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params["segrt_onnx"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("segrt_threads", "1"))
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._input = config["input"][0]["name"]
        self._outputs = [o["name"] for o in config["output"]]
        first = self._session.get_inputs()[0].shape[0]
        self._batch_axis = not isinstance(first, int) or first > 1

    def execute(self, requests):
        pb = self._pb
        arrays = [pb.get_input_tensor_by_name(r, self._input).as_numpy() for r in requests]
        if self._batch_axis and len(arrays) > 1:
            results = self._session.run(self._outputs, {self._input: np.concatenate(arrays)})
            bounds = np.cumsum([a.shape[0] for a in arrays])[:-1]
            per_request = list(zip(*(np.split(r, bounds) for r in results)))
        else:
            per_request = [self._session.run(self._outputs, {self._input: a}) for a in arrays]
        return [pb.InferenceResponse(output_tensors=[pb.Tensor(n, np.ascontiguousarray(v))
                                                     for n, v in zip(self._outputs, outs)])
                for outs in per_request]

    def finalize(self):
        self._session = None
