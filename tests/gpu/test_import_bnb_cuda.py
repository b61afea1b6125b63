"""Issue 13's acceptance check of shardlora-import hf on bitsandbytes 4-bit checkpoints, where
bitsandbytes quantizes with its CUDA kernels (the GPU host: PyTorch, transformers and the
bitsandbytes wheel that gpuhost_wheels installs). tests/hf/test_import_bnb.py with the checkpoints made
on the GPU: every code and statistic of the imported file must equal shardlora-quantize's of the same
float weights, with one exception bitsandbytes documents itself: its double-quantization offset is a
float mean, within 2 ulps of shardlora's exact one, so the 8-bit absmax codes are compared with
shardlora's encoding given bitsandbytes' offset (and with shardlora-quantize's file wherever the two
offsets are equal). The loss of transformers' 4-bit model on the GPU (fp32 compute) must equal shardlora
eval's of the imported file on the CPU backend within 1e-5."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hf"))
import test_import_bnb  # noqa: E402

test_import_bnb.main("cuda")
