"""The model: the only layer that imports torch, diffusers or peft.

``types`` (Clip, JobInputs, the Engine protocol) is torch-free so the layers above can name
them; ``ltx2`` loads an LTX-2 once and generates clips; ``stages`` denoises (one or two
stages), ``segments`` chains long videos, ``lora`` applies per-row LoRAs, ``levers`` and
``guidance`` are the speed levers (fp8, compile; batched guidance), ``placement``
spreads components over a replica's GPUs, ``weights`` finds the weights, ``tiny_model``
makes the embedded default and ``twins`` tiny twins of each real generation (LTX-2.0 / 2.3 / 2.5).

Rule: imports schema, storage and errors; torch and diffusers are imported here and nowhere
else (inside functions where a torch-free caller, such as the driver, reaches the module).
"""

import logging

# diffusers 0.42.1 registers torchao 0.15's tensor classes for torch.load at import and warns on
# every import when torchao 0.18 (the lock's, for --quantize fp8) lacks them. ltx-ray loads no
# torchao-serialized checkpoint (fp8 is applied after loading), so that one logger is quieted.
logging.getLogger("diffusers.quantizers.torchao.torchao_quantizer").setLevel(logging.ERROR)
