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
    // Along each axis, the output pixels whose source lies inside the frame (first, count),
    // the rest being `pad`: vision::preprocess::Span.
    int x_first, x_count, y_first, y_count;
    float pad;
    float mean[3], std[3];
    // The resize, as fast_image_resize does it for 8-bit pixels (vision::preprocess::gpu's
    // `AxisTaps`): for each of an axis's `count` output pixels, the first source pixel
    // (int), how many (int) and `window` fixed-point weights (short), scaled by
    // 2^precision.
    unsigned long long x_starts, x_sizes, x_weights, y_starts, y_sizes, y_weights;
    int x_window, y_window, x_precision, y_precision;
};

// NVRTC compiles without the standard headers: the few helpers needed are defined here.
__device__ int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// A fixed-point sum back to a pixel value: rounded (the sum starts at half), shifted, clipped.
__device__ int to_pixel(int sum, int precision) { return clamp_int(sum >> precision, 0, 255); }

// One thread an output pixel: fit (pad outside the frame's part), resize, normalise and
// pack into the model's layout and type, all in one pass. The resize is fast_image_resize's
// to the bit: the vertical pass first, each column's sum rounded to 8 bits, then the
// horizontal pass over those columns.
extern "C" __global__ void fit_resize_pack(const Fit f) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= f.out_w || y >= f.out_h) return;
    float rgb[3] = {f.pad, f.pad, f.pad};
    int ix = x - f.x_first, iy = y - f.y_first;
    if (ix >= 0 && ix < f.x_count && iy >= 0 && iy < f.y_count) {
        const unsigned char* frame = (const unsigned char*)f.frame;
        const short* wx = (const short*)f.x_weights + (unsigned long long)ix * f.x_window;
        const short* wy = (const short*)f.y_weights + (unsigned long long)iy * f.y_window;
        int x0 = ((const int*)f.x_starts)[ix], nx = ((const int*)f.x_sizes)[ix];
        int y0 = ((const int*)f.y_starts)[iy], ny = ((const int*)f.y_sizes)[iy];
        int sum[3];
        for (int c = 0; c < 3; c++) sum[c] = 1 << (f.x_precision - 1);
        for (int i = 0; i < nx; i++) {
            int column[3];
            for (int c = 0; c < 3; c++) column[c] = 1 << (f.y_precision - 1);
            for (int j = 0; j < ny; j++) {
                const unsigned char* p =
                    frame + ((unsigned long long)(y0 + j) * f.frame_w + x0 + i) * 3;
                for (int c = 0; c < 3; c++) column[c] += (int)wy[j] * p[c];
            }
            for (int c = 0; c < 3; c++) sum[c] += (int)wx[i] * to_pixel(column[c], f.y_precision);
        }
        for (int c = 0; c < 3; c++) rgb[c] = (float)to_pixel(sum[c], f.x_precision);
    }
    for (int c = 0; c < 3; c++) {
        unsigned long long at = f.nchw ? ((unsigned long long)c * f.out_h + y) * f.out_w + x
                                       : ((unsigned long long)y * f.out_w + x) * 3 + c;
        if (f.is_i32) {
            ((int*)f.out)[at] = (int)rgb[c];
        } else {
            ((float*)f.out)[at] = (rgb[c] - f.mean[c]) / f.std[c];
        }
    }
}

// What `paint_layers` needs; the same layout as `Layers` in src/vision/layer/gpu.rs. The
// layers are those of vision::layer, painted in one pass: the backdrop, then the tint.
struct Layers {
    unsigned long long frame;     // RGB in
    unsigned long long out;       // RGB out, the same size
    int width, height;
    // 0: no backdrop; 1: a flat colour; 2: a picture of the frame's size; 3: the blurred frame
    int backdrop;
    unsigned long long mask;      // person probabilities, f32, mask_w x mask_h
    int mask_w, mask_h;
    float edge_low, edge_high;    // probabilities between them blend person and backdrop
    int color[3];
    unsigned long long picture;   // RGB
    unsigned long long blurred;   // f32 x 3 a cell, blurred_w x blurred_h
    int blurred_w, blurred_h;
    // 0: no tint; else class ids (u8, ids_w x ids_h) coloured by `palette` (f32 x 4 a class:
    // premultiplied RGB and alpha), nearest cell (`tint_point`) or bilinear
    int tint;
    unsigned long long ids;
    int ids_w, ids_h;
    int tint_point;
    unsigned long long palette;
};

// Where frame pixel `x` samples a `grid`-cell axis: vision::mask's `taps`.
struct Tap { int low, high; float weight; };

__device__ Tap grid_tap(int x, int frame, int grid, int point) {
    float scale = (float)grid / (float)(frame > 1 ? frame : 1);
    float centre = ((float)x + 0.5f) * scale;
    float last = (float)(grid - 1);
    Tap t;
    if (point) {
        float p = fminf(fmaxf(floorf(centre), 0.0f), last);
        t.low = t.high = min((int)roundf(p), grid - 1);
        t.weight = 0.0f;
    } else {
        float p = fminf(fmaxf(centre - 0.5f, 0.0f), last);
        t.low = (int)p;
        t.high = min(t.low + 1, grid - 1);
        t.weight = p - (float)t.low;
    }
    return t;
}

__device__ float mix(float a, float b, float t) { return a + (b - a) * t; }

// vision::mask's `to_byte`: rounded, saturated.
__device__ unsigned char to_byte(float v) {
    float t = v + 0.5f;
    return !(t > 0.0f) ? 0 : (t >= 255.0f ? 255 : (unsigned char)t);
}

// A grid's value between four cells, rows blended first as the CPU's `Grid::paint` does.
__device__ float sample(const float* cells, int width, int channels, int c, Tap tx, Tap ty) {
    float low = mix(cells[(ty.low * width + tx.low) * channels + c],
                    cells[(ty.high * width + tx.low) * channels + c], ty.weight);
    float high = mix(cells[(ty.low * width + tx.high) * channels + c],
                     cells[(ty.high * width + tx.high) * channels + c], ty.weight);
    return mix(low, high, tx.weight);
}

// One thread a frame pixel: read it once, paint every layer, write it once.
extern "C" __global__ void paint_layers(const Layers l) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= l.width || y >= l.height) return;
    unsigned long long at = ((unsigned long long)y * l.width + x) * 3;
    const unsigned char* in = (const unsigned char*)l.frame + at;
    unsigned char px[3] = {in[0], in[1], in[2]};
    if (l.backdrop) {
        Tap tx = grid_tap(x, l.width, l.mask_w, 0), ty = grid_tap(y, l.height, l.mask_h, 0);
        float p = sample((const float*)l.mask, l.mask_w, 1, 0, tx, ty);
        float person = fminf(fmaxf((p - l.edge_low) / (l.edge_high - l.edge_low), 0.0f), 1.0f);
        if (person < 1.0f) {
            unsigned char r[3];
            for (int c = 0; c < 3; c++) {
                if (l.backdrop == 1) {
                    r[c] = (unsigned char)l.color[c];
                } else if (l.backdrop == 2) {
                    r[c] = ((const unsigned char*)l.picture)[at + c];
                } else {
                    Tap bx = grid_tap(x, l.width, l.blurred_w, 0);
                    Tap by = grid_tap(y, l.height, l.blurred_h, 0);
                    r[c] = to_byte(sample((const float*)l.blurred, l.blurred_w, 3, c, bx, by));
                }
            }
            for (int c = 0; c < 3; c++) {
                px[c] = person <= 0.0f ? r[c]
                                       : to_byte((float)px[c] * person + (float)r[c] * (1.0f - person));
            }
        }
    }
    if (l.tint) {
        Tap tx = grid_tap(x, l.width, l.ids_w, l.tint_point);
        Tap ty = grid_tap(y, l.height, l.ids_h, l.tint_point);
        const unsigned char* ids = (const unsigned char*)l.ids;
        const float* palette = (const float*)l.palette;
        float cells[4][4];  // the four cells' colours: (low, low), (low, high) in x, then high rows
        int corners[4] = {ty.low * l.ids_w + tx.low, ty.low * l.ids_w + tx.high,
                          ty.high * l.ids_w + tx.low, ty.high * l.ids_w + tx.high};
        for (int k = 0; k < 4; k++)
            for (int c = 0; c < 4; c++) cells[k][c] = palette[ids[corners[k]] * 4 + c];
        float v[4];
        for (int c = 0; c < 4; c++) {
            float low = mix(cells[0][c], cells[2][c], ty.weight);
            float high = mix(cells[1][c], cells[3][c], ty.weight);
            v[c] = mix(low, high, tx.weight);
        }
        if (v[3] > 0.0f) {
            for (int c = 0; c < 3; c++) px[c] = to_byte((float)px[c] * (1.0f - v[3]) + v[c]);
        }
    }
    unsigned char* out = (unsigned char*)l.out + at;
    out[0] = px[0];
    out[1] = px[1];
    out[2] = px[2];
}

// One cell of a box blur of `radius` along rows (`along_columns` 0) or columns, edges
// repeating the last cell: the blur mode's (vision::layer::blur) small picture, 3 floats a
// cell.
extern "C" __global__ void box_blur(const float* in, float* out, int width, int height,
                                    int radius, int along_columns) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    float sum[3] = {0.0f, 0.0f, 0.0f};
    for (int i = -radius; i <= radius; i++) {
        int cx = along_columns ? x : clamp_int(x + i, 0, width - 1);
        int cy = along_columns ? clamp_int(y + i, 0, height - 1) : y;
        for (int c = 0; c < 3; c++) sum[c] += in[(cy * width + cx) * 3 + c];
    }
    for (int c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = sum[c] / (float)(2 * radius + 1);
}

// One thread a pixel of an action clip's input [1,3,T,H,W] (channel-major, then time), from
// the ring of T frames [T][3][H][W] that vision::action keeps on the device, whose oldest
// frame is slot `oldest`: a copy, frames in order from the oldest.
extern "C" __global__ void gather_clip(const float* ring, float* clip, int width, int height,
                                       int frames, int oldest) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    unsigned long long plane = (unsigned long long)width * height, at = (unsigned long long)y * width + x;
    for (int c = 0; c < 3; c++) {
        for (int t = 0; t < frames; t++) {
            int slot = (oldest + t) % frames;
            clip[((unsigned long long)c * frames + t) * plane + at] =
                ring[((unsigned long long)slot * 3 + c) * plane + at];
        }
    }
}

// What `class_map` needs; the same layout as `ClassScores` in src/vision/segmentation/gpu.rs.
struct ClassScores {
    unsigned long long scores;   // the model's output, f32, on the device
    unsigned long long ids;      // the class map out: u8, width x height
    unsigned long long columns;  // a Tap for each map column, then
    unsigned long long rows;     // one for each map row: where it samples the grid
    int width, height;
    int grid_w, grid_h;
    int classes;                 // 1: a probability p, taken as the scores (1 - p, p)
    int nchw;                    // 1: [1,C,H,W]; 0: [1,H,W,C]
};

__device__ float class_score(const ClassScores& m, int c, int x, int y) {
    const float* s = (const float*)m.scores;
    if (m.classes == 1) {
        float p = s[y * m.grid_w + x];
        return c ? p : 1.0f - p;
    }
    return m.nchw ? s[((unsigned long long)c * m.grid_h + y) * m.grid_w + x]
                  : s[((unsigned long long)y * m.grid_w + x) * m.classes + c];
}

// One thread a map pixel: every class's score upsampled there (rows blended first, as
// vision::segmentation's `ClassMap::of` does), and the first best class.
extern "C" __global__ void class_map(const ClassScores m) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= m.width || y >= m.height) return;
    Tap tx = ((const Tap*)m.columns)[x], ty = ((const Tap*)m.rows)[y];
    int classes = m.classes > 1 ? m.classes : 2;
    float best = 0.0f;
    int id = 0;
    for (int c = 0; c < classes; c++) {
        float low = mix(class_score(m, c, tx.low, ty.low), class_score(m, c, tx.low, ty.high), ty.weight);
        float high = mix(class_score(m, c, tx.high, ty.low), class_score(m, c, tx.high, ty.high), ty.weight);
        float v = mix(low, high, tx.weight);
        if (c == 0 || !(best >= v)) {
            best = v;
            id = c;
        }
    }
    ((unsigned char*)m.ids)[(unsigned long long)y * m.width + x] = (unsigned char)id;
}
