// kernels.cu's `fit_resize_pack` run on the CPU, one output pixel at a time, so that a test
// without a GPU can hold the kernel's arithmetic against the CPU path (vision::preprocess).
// stdin: the kernel's `Fit` as its bytes (frame and out left 0), then the frame's RGB bytes;
// stdout: the output tensor, 4 bytes an element.
#include <cmath>
#include <cstdio>
#include <vector>

#define __device__ static
#define __global__
struct Index { unsigned x, y; };
static Index blockIdx, blockDim = {1, 1}, threadIdx = {0, 0};
static int __float2int_rn(float v) { return (int)std::nearbyint(v); }

#include "kernels.cu"

int main() {
    Fit f;
    if (fread(&f, sizeof f, 1, stdin) != 1) return 2;
    std::vector<unsigned char> frame((size_t)f.frame_w * f.frame_h * 3);
    if (fread(frame.data(), 1, frame.size(), stdin) != frame.size()) return 3;
    std::vector<unsigned> out((size_t)f.out_w * f.out_h * 3);
    f.frame = (unsigned long long)frame.data();
    f.out = (unsigned long long)out.data();
    for (int y = 0; y < f.out_h; y++) {
        for (int x = 0; x < f.out_w; x++) {
            blockIdx = {(unsigned)x, (unsigned)y};
            fit_resize_pack(f);
        }
    }
    return fwrite(out.data(), 4, out.size(), stdout) == out.size() ? 0 : 4;
}
