"""cuda_runs check: build the written kernel_src/relu.cu with PyTorch and compare it with torch.relu.

Runs in the trial's workspace, only where torch.cuda.is_available(); exits 0 when the kernel matches.
"""

import sys
from pathlib import Path

import torch
from torch.utils.cpp_extension import load_inline

kernel = Path("kernel_src/relu.cu").read_text()
launcher = r"""
torch::Tensor relu_forward(torch::Tensor x) {
    TORCH_CHECK(x.is_cuda() && x.dtype() == torch::kFloat32, "x must be a float32 CUDA tensor");
    auto xc = x.contiguous();
    auto y = torch::empty_like(xc);
    int n = xc.numel();
    relu_kernel<<<(n + 255) / 256, 256>>>(xc.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
"""
module = load_inline(
    name="upskill_relu_check",
    cpp_sources="torch::Tensor relu_forward(torch::Tensor x);",
    cuda_sources=kernel + "\n#include <torch/types.h>\n" + launcher,
    functions=["relu_forward"],
    extra_cuda_cflags=["-arch=sm_90"] if torch.cuda.get_device_capability() >= (9, 0) else [],
    build_directory=str(Path(".tmp").resolve()) if Path(".tmp").is_dir() else None,
)
x = torch.randn(1 << 20, device="cuda")
y = module.relu_forward(x)
torch.cuda.synchronize()
if not torch.equal(y, torch.relu(x)):
    bad = (y != torch.relu(x)).sum().item()
    sys.exit(f"relu_kernel differs from torch.relu at {bad} of {x.numel()} elements")
print(f"relu_kernel matches torch.relu on {x.numel()} elements ({torch.cuda.get_device_name()})")
