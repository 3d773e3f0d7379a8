// visiond's CUDA kernels, compiled with NVRTC at run time (src/gpu/mod.rs). Each has a CPU
// twin that is the reference: tools/gpu-check compares the two on the test pictures.

// What `fit_resize_pack` needs; the same layout as `Fit` in src/vision/preprocess/gpu.rs.
struct Fit {
    unsigned long long frame;  // RGB, 8 bits a channel, rows packed
    unsigned long long out;    // the model's input tensor: f32 or i32
    int frame_w, frame_h;
    int out_w, out_h;
    int nchw;                  // 1: [1,3,H,W]; 0: [1,H,W,3]
    int is_i32;                // 1: raw pixel values; 0: (pixel - mean) / std
    // Along each axis, the output pixels whose source lies inside the frame (first, count)
    // and where they come from in frame pixels (from, length): vision::preprocess::Span.
    int x_first, x_count, y_first, y_count;
    float x_from, x_len, y_from, y_len;
    float pad;                 // the pixel value outside that part
    float mean[3], std[3];
};

// NVRTC compiles without the standard headers: the few helpers needed are defined here.
__device__ int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// The bilinear (triangle) filter, support 1.
__device__ float triangle(float x) {
    x = fabsf(x);
    return x < 1.0f ? 1.0f - x : 0.0f;
}

// Where output pixel `i` of an axis reads: the source span [lo, hi) and the filter's centre
// and width there. The filter widens when shrinking, as PIL's and fast_image_resize's do.
struct Taps { int lo, hi; float centre, width; };

__device__ Taps taps(int i, int count, float from, float len, int size) {
    float scale = len / count;
    Taps t;
    t.width = fmaxf(scale, 1.0f);
    float centre = from + (i + 0.5f) * scale;
    t.lo = clamp_int((int)floorf(centre - t.width), 0, size);
    t.hi = clamp_int((int)ceilf(centre + t.width), 0, size);
    t.centre = centre - 0.5f;  // pixel j's weight: triangle((j - centre) / width)
    return t;
}

// One thread an output pixel: fit (pad outside the frame's part), resize, normalise and
// pack into the model's layout and type, all in one pass over the frame.
extern "C" __global__ void fit_resize_pack(const Fit f) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= f.out_w || y >= f.out_h) return;
    float rgb[3] = {f.pad, f.pad, f.pad};
    int ix = x - f.x_first, iy = y - f.y_first;
    if (ix >= 0 && ix < f.x_count && iy >= 0 && iy < f.y_count) {
        Taps tx = taps(ix, f.x_count, f.x_from, f.x_len, f.frame_w);
        Taps ty = taps(iy, f.y_count, f.y_from, f.y_len, f.frame_h);
        const unsigned char* frame = (const unsigned char*)f.frame;
        float sum[3] = {0.0f, 0.0f, 0.0f};
        float weights_x = 0.0f, weights_y = 0.0f;
        for (int i = tx.lo; i < tx.hi; i++) weights_x += triangle((i - tx.centre) / tx.width);
        for (int j = ty.lo; j < ty.hi; j++) {
            float wy = triangle((j - ty.centre) / ty.width);
            if (wy == 0.0f) continue;
            weights_y += wy;
            const unsigned char* row = frame + (unsigned long long)j * f.frame_w * 3;
            float r = 0.0f, g = 0.0f, b = 0.0f;
            for (int i = tx.lo; i < tx.hi; i++) {
                float wx = triangle((i - tx.centre) / tx.width);
                r += wx * row[i * 3];
                g += wx * row[i * 3 + 1];
                b += wx * row[i * 3 + 2];
            }
            sum[0] += wy * r;
            sum[1] += wy * g;
            sum[2] += wy * b;
        }
        float total = weights_x * weights_y;
        if (total > 0.0f) {
            for (int c = 0; c < 3; c++) rgb[c] = sum[c] / total;
        }
    }
    for (int c = 0; c < 3; c++) {
        unsigned long long at = f.nchw ? ((unsigned long long)c * f.out_h + y) * f.out_w + x
                                       : ((unsigned long long)y * f.out_w + x) * 3 + c;
        if (f.is_i32) {
            ((int*)f.out)[at] = clamp_int(__float2int_rn(rgb[c]), 0, 255);
        } else {
            ((float*)f.out)[at] = (rgb[c] - f.mean[c]) / f.std[c];
        }
    }
}
