"""Weights from other projects' checkpoints into vdm's models (Wan2.1: `vdm.convert.wan`).

Readers (`vdm.convert.readers`) open safetensors files, sharded sets with their index, and
PyTorch `.pth` files without unpickling arbitrary objects; tensors are read one at a time, so a
checkpoint larger than the host's memory converts tensor by tensor onto the device mesh.
"""
