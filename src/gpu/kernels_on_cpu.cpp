// kernels.cu's kernels run on the CPU, one thread's work at a time, so that a test without
// a GPU can hold the kernels' arithmetic against the CPU path they stand in for.
//   kernels-on-cpu fit: stdin the kernel's `Fit` as its bytes (addresses left 0), the
//     frame's RGB, then for x and y in turn the taps' starts, sizes (int) and weights
//     (short); stdout the output tensor, 4 bytes an element (vision::preprocess).
//   kernels-on-cpu layers: stdin `Layers` as its bytes (addresses left 0), the frame's RGB,
//     then what its layers read, in the struct's order: the mask (f32), the picture (RGB) or
//     the blurred cells (f32 x 3), the class ids (u8), and to the end the palette (f32 x 4);
//     stdout the painted RGB (vision::layer).
//   kernels-on-cpu blur WIDTH HEIGHT RADIUS ALONG_COLUMNS: stdin and stdout f32 x 3 cells.
//   kernels-on-cpu clip WIDTH HEIGHT FRAMES OLDEST: stdin the ring of frames (f32), stdout
//     the clip (f32) (vision::action).
//   kernels-on-cpu classes: stdin `ClassScores` as its bytes (addresses left 0), the scores
//     (f32), the columns' then the rows' taps; stdout the class map (u8)
//     (vision::segmentation).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define __device__ static
#define __global__
struct Index { unsigned x, y; };
static Index blockIdx, blockDim = {1, 1}, threadIdx = {0, 0};
static int min(int a, int b) { return a < b ? a : b; }

#include "kernels.cu"

template <typename T> static bool read_all(std::vector<T>& into, size_t count) {
    into.resize(count);
    return fread(into.data(), sizeof(T), count, stdin) == count;
}

template <typename T> static int write_all(const std::vector<T>& from) {
    return fwrite(from.data(), sizeof(T), from.size(), stdout) == from.size() ? 0 : 4;
}

// Every thread of a `width` x `height` launch, in turn.
template <typename F> static void each_thread(int width, int height, F run) {
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            blockIdx = {(unsigned)x, (unsigned)y};
            run();
        }
    }
}

// A buffer's address as the kernels' parameters hold one.
template <typename T> static unsigned long long address(std::vector<T>& buffer) {
    return (unsigned long long)buffer.data();
}

// One axis's resize taps as `fit_resize_pack` reads them.
struct Taps {
    std::vector<int> starts, sizes;
    std::vector<short> weights;
};

// `count` starts and sizes, then `count * window` weights; an axis with no output pixel
// inside the frame still has one (unused) set.
static bool read_taps(Taps& taps, int count, int window) {
    size_t sets = count ? count : 1;
    return read_all(taps.starts, sets) && read_all(taps.sizes, sets) &&
           read_all(taps.weights, sets * window);
}

static int fit() {
    Fit f;
    std::vector<unsigned char> frame;
    Taps x, y;
    if (fread(&f, sizeof f, 1, stdin) != 1) return 2;
    if (!read_all(frame, (size_t)f.frame_w * f.frame_h * 3)) return 3;
    if (!read_taps(x, f.x_count, f.x_window) || !read_taps(y, f.y_count, f.y_window)) return 3;
    std::vector<unsigned> out((size_t)f.out_w * f.out_h * 3);
    f.frame = address(frame);
    f.out = address(out);
    f.x_starts = address(x.starts);
    f.x_sizes = address(x.sizes);
    f.x_weights = address(x.weights);
    f.y_starts = address(y.starts);
    f.y_sizes = address(y.sizes);
    f.y_weights = address(y.weights);
    each_thread(f.out_w, f.out_h, [&] { fit_resize_pack(f); });
    return write_all(out);
}

static int layers() {
    Layers l;
    std::vector<unsigned char> frame, picture, ids;
    std::vector<float> mask, blurred, palette;
    if (fread(&l, sizeof l, 1, stdin) != 1) return 2;
    size_t pixels = (size_t)l.width * l.height;
    if (!read_all(frame, pixels * 3)) return 3;
    if (l.backdrop && !read_all(mask, (size_t)l.mask_w * l.mask_h)) return 3;
    if (l.backdrop == 2 && !read_all(picture, pixels * 3)) return 3;
    if (l.backdrop == 3 && !read_all(blurred, (size_t)l.blurred_w * l.blurred_h * 3)) return 3;
    if (l.tint) {
        if (!read_all(ids, (size_t)l.ids_w * l.ids_h)) return 3;
        float value;
        while (fread(&value, sizeof value, 1, stdin) == 1) palette.push_back(value);
    }
    std::vector<unsigned char> out(pixels * 3);
    l.frame = address(frame);
    l.out = address(out);
    l.mask = address(mask);
    l.picture = address(picture);
    l.blurred = address(blurred);
    l.ids = address(ids);
    l.palette = address(palette);
    each_thread(l.width, l.height, [&] { paint_layers(l); });
    return write_all(out);
}

static int blur(char** args) {
    int width = atoi(args[0]), height = atoi(args[1]);
    int radius = atoi(args[2]), along_columns = atoi(args[3]);
    std::vector<float> in, out((size_t)width * height * 3);
    if (!read_all(in, out.size())) return 3;
    each_thread(width, height,
                [&] { box_blur(in.data(), out.data(), width, height, radius, along_columns); });
    return write_all(out);
}

static int clip(char** args) {
    int width = atoi(args[0]), height = atoi(args[1]);
    int frames = atoi(args[2]), oldest = atoi(args[3]);
    std::vector<float> ring, out((size_t)width * height * 3 * frames);
    if (!read_all(ring, out.size())) return 3;
    each_thread(width, height,
                [&] { gather_clip(ring.data(), out.data(), width, height, frames, oldest); });
    return write_all(out);
}

static int classes() {
    ClassScores m;
    std::vector<float> scores;
    std::vector<Tap> columns, rows;
    if (fread(&m, sizeof m, 1, stdin) != 1) return 2;
    if (!read_all(scores, (size_t)m.grid_w * m.grid_h * m.classes)) return 3;
    if (!read_all(columns, m.width) || !read_all(rows, m.height)) return 3;
    std::vector<unsigned char> ids((size_t)m.width * m.height);
    m.scores = address(scores);
    m.ids = address(ids);
    m.columns = address(columns);
    m.rows = address(rows);
    each_thread(m.width, m.height, [&] { class_map(m); });
    return write_all(ids);
}

int main(int argc, char** argv) {
    if (argc == 2 && !strcmp(argv[1], "fit")) return fit();
    if (argc == 2 && !strcmp(argv[1], "layers")) return layers();
    if (argc == 6 && !strcmp(argv[1], "blur")) return blur(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "clip")) return clip(argv + 2);
    if (argc == 2 && !strcmp(argv[1], "classes")) return classes();
    fprintf(stderr, "usage: kernels-on-cpu fit | layers | blur WIDTH HEIGHT RADIUS ALONG_COLUMNS"
                    " | clip WIDTH HEIGHT FRAMES OLDEST | classes\n");
    return 1;
}
