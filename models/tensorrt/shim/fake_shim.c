/* fake_shim.c: a deterministic implementation of trt_shim.h for tests on machines without
 * TensorRT or a GPU. "Device" memory is host memory; the one "engine" it knows has
 *
 *   images   input   float32 [-1, 3, -1, -1]  (profile: batch 1..4, H and W 32..2048)
 *   output0  output  float32 [-1, 6]          output0[n][k] = mean(images[n]) * (k + 1)
 *   num_dets output  int32   [-1]             num_dets[n] = n + 1
 *
 * and an engine file is the bytes "FRACTURE-FAKE-ENGINE\n" followed by anything.
 *
 * A second kind, a YOLO-shaped engine, is built from an "ONNX" file whose first line is
 * "FRACTURE-FAKE-YOLO nc=<nc> anchors=<K>" (its engine file carries "yolo nc=<nc>
 * anchors=<K>" on its second line; the fake parses no real ONNX). It has
 *
 *   images   input   float32 [-1, 3, -1, -1]  (same profile)
 *   output0  output  float32 [-1, 4 + nc, K]  ultralytics' decoded predictions:
 *            with m = mean(images[n]), H x W the input size and a = 0..K-1,
 *            cx = W (a + 1) / (K + 1), cy = H (a + 1) / (K + 1),
 *            w = W / (2 (K + 1)), h = H / (2 (K + 1)),
 *            score of class c = m (a + 1) / (K (c + 1))
 *
 * (disjoint boxes along the diagonal, scores rising with the anchor and the image's mean).
 * Extra
 * symbols (trt_fake_*) let tests make any entry point fail, change the reported TensorRT
 * version and GPU, and count live handles. Built with -DFAKE_OMIT_ENQUEUE it lacks
 * trt_context_enqueue_v3; with -DFAKE_ABI_VERSION=N it reports another ABI version. */
#include "trt_shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION TRT_SHIM_ABI_VERSION
#endif

static const char ENGINE_MAGIC[] = "FRACTURE-FAKE-ENGINE\n";

static char g_fail_fn[128];
static int32_t g_fail_code;
static char g_version[64] = "10.3.0";
static char g_gpu[256] = "Fake GPU (fracture-tensorrt tests)";
static int32_t g_major = 8, g_minor = 7;
static int64_t g_live;

void trt_fake_set_failure(const char *function, int32_t code) {
    if (function == NULL) {
        g_fail_fn[0] = '\0';
    } else {
        snprintf(g_fail_fn, sizeof g_fail_fn, "%s", function);
    }
    g_fail_code = code;
}

void trt_fake_set_trt_version(const char *version) {
    snprintf(g_version, sizeof g_version, "%s", version);
}

void trt_fake_set_device(const char *name, int32_t major, int32_t minor) {
    snprintf(g_gpu, sizeof g_gpu, "%s", name);
    g_major = major;
    g_minor = minor;
}

int64_t trt_fake_live_handles(void) { return g_live; }

static int fail(trt_error *err, int32_t code, const char *fmt, const char *arg) {
    if (err != NULL) {
        err->code = code;
        snprintf(err->message, sizeof err->message, fmt, arg);
    }
    return code;
}

static int ok(trt_error *err) {
    if (err != NULL) {
        err->code = TRT_OK;
        err->message[0] = '\0';
    }
    return TRT_OK;
}

/* Fails when a test asked this function to. */
static int injected(const char *function, trt_error *err) {
    if (g_fail_fn[0] != '\0' && strcmp(g_fail_fn, function) == 0) {
        return fail(err, g_fail_code, "injected failure in %s", function);
    }
    return TRT_OK;
}

#define INJECT(fn)                                                                             \
    do {                                                                                       \
        int rc_ = injected(fn, err);                                                           \
        if (rc_ != TRT_OK) return rc_;                                                         \
    } while (0)

uint32_t trt_shim_abi_version(void) { return FAKE_ABI_VERSION; }

int trt_shim_init(trt_error *err) {
    INJECT("trt_shim_init");
    return ok(err);
}

int trt_shim_trt_version(char *buf, size_t len, trt_error *err) {
    INJECT("trt_shim_trt_version");
    if (buf == NULL || len == 0) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "no buffer");
    snprintf(buf, len, "%s", g_version);
    return ok(err);
}

int trt_shim_device_info(int32_t device, char *name, size_t name_len, int32_t *major,
                         int32_t *minor, trt_error *err) {
    INJECT("trt_shim_device_info");
    if (device != 0) return fail(err, TRT_ERR_CUDA, "%s", "cudaGetDeviceProperties failed: cudaErrorInvalidDevice");
    snprintf(name, name_len, "%s", g_gpu);
    *major = g_major;
    *minor = g_minor;
    return ok(err);
}

int trt_stream_create(trt_stream *out, trt_error *err) {
    INJECT("trt_stream_create");
    *out = malloc(1);
    g_live++;
    return ok(err);
}

int trt_stream_synchronize(trt_stream stream, trt_error *err) {
    INJECT("trt_stream_synchronize");
    if (stream == NULL) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "null stream");
    return ok(err);
}

void trt_stream_destroy(trt_stream stream) {
    if (stream != NULL) {
        free(stream);
        g_live--;
    }
}

int trt_device_malloc(size_t bytes, void **out, trt_error *err) {
    INJECT("trt_device_malloc");
    *out = calloc(bytes == 0 ? 1 : bytes, 1);
    if (*out == NULL) return fail(err, TRT_ERR_CUDA, "%s", "cudaMalloc failed: cudaErrorMemoryAllocation");
    g_live++;
    return ok(err);
}

void trt_device_free(void *ptr) {
    if (ptr != NULL) {
        free(ptr);
        g_live--;
    }
}

int trt_memcpy_htod(void *dst, const void *src, size_t bytes, trt_error *err) {
    INJECT("trt_memcpy_htod");
    if (dst == NULL || src == NULL) return fail(err, TRT_ERR_CUDA, "%s", "cudaMemcpy failed: cudaErrorInvalidValue");
    memcpy(dst, src, bytes);
    return ok(err);
}

int trt_memcpy_dtoh(void *dst, const void *src, size_t bytes, trt_error *err) {
    INJECT("trt_memcpy_dtoh");
    if (dst == NULL || src == NULL) return fail(err, TRT_ERR_CUDA, "%s", "cudaMemcpy failed: cudaErrorInvalidValue");
    memcpy(dst, src, bytes);
    return ok(err);
}

struct trt_runtime { int unused; };
struct trt_engine {
    int yolo; /* 0: the plain engine; 1: the YOLO-shaped one */
    int32_t nc, anchors;
};
struct trt_context {
    int yolo;
    int32_t nc, anchors;
    int shape_set;
    int64_t n, h, w;
    float *images;
    float *output0;
    int32_t *num_dets;
};
struct trt_blob {
    char *data;
    size_t size;
};

int trt_runtime_create(trt_runtime **out, trt_error *err) {
    INJECT("trt_runtime_create");
    *out = calloc(1, sizeof(trt_runtime));
    g_live++;
    return ok(err);
}

void trt_runtime_destroy(trt_runtime *runtime) {
    if (runtime != NULL) {
        free(runtime);
        g_live--;
    }
}

int trt_engine_deserialize(trt_runtime *runtime, const void *data, size_t len, trt_engine **out,
                           trt_error *err) {
    INJECT("trt_engine_deserialize");
    if (runtime == NULL || data == NULL) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "null argument");
    if (len < sizeof ENGINE_MAGIC - 1 || memcmp(data, ENGINE_MAGIC, sizeof ENGINE_MAGIC - 1) != 0) {
        return fail(err, TRT_ERR_TENSORRT, "%s", "deserializeCudaEngine failed (not a fake engine)");
    }
    trt_engine *engine = calloc(1, sizeof(trt_engine));
    /* "yolo nc=N anchors=K" on the line after the magic (a NUL-terminated copy first). */
    size_t rest = len - (sizeof ENGINE_MAGIC - 1);
    char line[128];
    size_t n = rest < sizeof line - 1 ? rest : sizeof line - 1;
    memcpy(line, (const char *)data + sizeof ENGINE_MAGIC - 1, n);
    line[n] = '\0';
    int nc = 0, anchors = 0;
    if (sscanf(line, "yolo nc=%d anchors=%d", &nc, &anchors) == 2) {
        if (nc < 1 || nc > 1000 || anchors < 1 || anchors > 100000) {
            free(engine);
            return fail(err, TRT_ERR_TENSORRT, "%s", "deserializeCudaEngine failed (bad fake YOLO engine)");
        }
        engine->yolo = 1;
        engine->nc = nc;
        engine->anchors = anchors;
    }
    *out = engine;
    g_live++;
    return ok(err);
}

void trt_engine_destroy(trt_engine *engine) {
    if (engine != NULL) {
        free(engine);
        g_live--;
    }
}

int trt_engine_num_io_tensors(const trt_engine *engine, int32_t *out, trt_error *err) {
    INJECT("trt_engine_num_io_tensors");
    *out = engine != NULL && engine->yolo ? 2 : 3;
    return ok(err);
}

static void put_desc(trt_tensor_desc *d, const char *name, int32_t mode, int32_t dtype,
                     int32_t nb, const int64_t *dims) {
    snprintf(d->name, sizeof d->name, "%s", name);
    d->mode = mode;
    d->dtype = dtype;
    d->nb_dims = nb;
    for (int32_t i = 0; i < nb; i++) d->dims[i] = dims[i];
}

int trt_engine_io_tensor(const trt_engine *engine, int32_t index, trt_tensor_desc *out,
                         trt_error *err) {
    INJECT("trt_engine_io_tensor");
    static const int64_t images[4] = {-1, 3, -1, -1};
    if (engine != NULL && engine->yolo) {
        int64_t yolo_out[3] = {-1, 4 + (int64_t)engine->nc, engine->anchors};
        switch (index) {
        case 0: put_desc(out, "images", TRT_IO_INPUT, 0, 4, images); break;
        case 1: put_desc(out, "output0", TRT_IO_OUTPUT, 0, 3, yolo_out); break;
        default: return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "io_tensor: index out of range");
        }
        return ok(err);
    }
    static const int64_t output0[2] = {-1, 6};
    static const int64_t num_dets[1] = {-1};
    switch (index) {
    case 0: put_desc(out, "images", TRT_IO_INPUT, 0, 4, images); break;
    case 1: put_desc(out, "output0", TRT_IO_OUTPUT, 0, 2, output0); break;
    case 2: put_desc(out, "num_dets", TRT_IO_OUTPUT, 3, 1, num_dets); break;
    default: return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "io_tensor: index out of range");
    }
    return ok(err);
}

int trt_context_create(trt_engine *engine, trt_context **out, trt_error *err) {
    INJECT("trt_context_create");
    if (engine == NULL) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "null engine");
    trt_context *context = calloc(1, sizeof(trt_context));
    context->yolo = engine->yolo;
    context->nc = engine->nc;
    context->anchors = engine->anchors;
    *out = context;
    g_live++;
    return ok(err);
}

void trt_context_destroy(trt_context *context) {
    if (context != NULL) {
        free(context);
        g_live--;
    }
}

static int known(const trt_context *context, const char *name) {
    return strcmp(name, "images") == 0 || strcmp(name, "output0") == 0 ||
           (!context->yolo && strcmp(name, "num_dets") == 0);
}

int trt_context_set_input_shape(trt_context *context, const char *name, int32_t nb_dims,
                                const int64_t *dims, trt_error *err) {
    INJECT("trt_context_set_input_shape");
    if (!known(context, name)) return fail(err, TRT_ERR_INVALID_ARGUMENT, "no tensor named %s", name);
    if (strcmp(name, "images") != 0) return fail(err, TRT_ERR_TENSORRT, "setInputShape: %s is not an input", name);
    if (nb_dims != 4 || dims[1] != 3 || dims[0] < 1 || dims[0] > 4 || dims[2] < 32 ||
        dims[2] > 2048 || dims[3] < 32 || dims[3] > 2048) {
        return fail(err, TRT_ERR_TENSORRT, "setInputShape refused the shape of %s (outside the optimisation profile)", name);
    }
    context->shape_set = 1;
    context->n = dims[0];
    context->h = dims[2];
    context->w = dims[3];
    return ok(err);
}

int trt_context_tensor_shape(const trt_context *context, const char *name, int32_t *nb_dims,
                             int64_t *dims, trt_error *err) {
    INJECT("trt_context_tensor_shape");
    int64_t n = context->shape_set ? context->n : -1;
    if (strcmp(name, "images") == 0) {
        *nb_dims = 4;
        dims[0] = n;
        dims[1] = 3;
        dims[2] = context->shape_set ? context->h : -1;
        dims[3] = context->shape_set ? context->w : -1;
    } else if (strcmp(name, "output0") == 0 && context->yolo) {
        *nb_dims = 3;
        dims[0] = n;
        dims[1] = 4 + (int64_t)context->nc;
        dims[2] = context->anchors;
    } else if (strcmp(name, "output0") == 0) {
        *nb_dims = 2;
        dims[0] = n;
        dims[1] = 6;
    } else if (strcmp(name, "num_dets") == 0 && !context->yolo) {
        *nb_dims = 1;
        dims[0] = n;
    } else {
        return fail(err, TRT_ERR_INVALID_ARGUMENT, "no tensor named %s", name);
    }
    return ok(err);
}

int trt_context_set_tensor_address(trt_context *context, const char *name, void *ptr,
                                   trt_error *err) {
    INJECT("trt_context_set_tensor_address");
    if (ptr == NULL) return fail(err, TRT_ERR_TENSORRT, "setTensorAddress refused %s (null)", name);
    if (strcmp(name, "images") == 0) context->images = ptr;
    else if (strcmp(name, "output0") == 0) context->output0 = ptr;
    else if (strcmp(name, "num_dets") == 0 && !context->yolo) context->num_dets = ptr;
    else return fail(err, TRT_ERR_INVALID_ARGUMENT, "no tensor named %s", name);
    return ok(err);
}

#ifndef FAKE_OMIT_ENQUEUE
/* The YOLO-shaped engine's output0 [n, 4 + nc, K] (see the header comment). */
static int run_yolo(trt_context *context, trt_error *err) {
    int64_t per = 3 * context->h * context->w;
    int64_t rows = 4 + (int64_t)context->nc, k = context->anchors;
    float H = (float)context->h, W = (float)context->w, K1 = (float)(k + 1);
    for (int64_t n = 0; n < context->n; n++) {
        double sum = 0.0;
        for (int64_t i = 0; i < per; i++) sum += context->images[n * per + i];
        float mean = (float)(sum / (double)per);
        float *out = context->output0 + n * rows * k;
        for (int64_t a = 0; a < k; a++) {
            float step = (float)(a + 1) / K1;
            out[0 * k + a] = W * step;
            out[1 * k + a] = H * step;
            out[2 * k + a] = W / (2.0f * K1);
            out[3 * k + a] = H / (2.0f * K1);
            for (int64_t c = 0; c < context->nc; c++) {
                out[(4 + c) * k + a] = mean * (float)(a + 1) / ((float)k * (float)(c + 1));
            }
        }
    }
    return ok(err);
}

int trt_context_enqueue_v3(trt_context *context, trt_stream stream, trt_error *err) {
    INJECT("trt_context_enqueue_v3");
    if (stream == NULL) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "null stream");
    if (!context->shape_set) return fail(err, TRT_ERR_TENSORRT, "%s", "enqueueV3 failed: the shape of images is not set");
    if (context->images == NULL) return fail(err, TRT_ERR_TENSORRT, "%s", "enqueueV3 failed: no address for images");
    if (context->output0 == NULL) return fail(err, TRT_ERR_TENSORRT, "%s", "enqueueV3 failed: no address for output0");
    if (context->yolo) return run_yolo(context, err);
    if (context->num_dets == NULL) return fail(err, TRT_ERR_TENSORRT, "%s", "enqueueV3 failed: no address for num_dets");
    int64_t per = 3 * context->h * context->w;
    for (int64_t n = 0; n < context->n; n++) {
        double sum = 0.0;
        for (int64_t i = 0; i < per; i++) sum += context->images[n * per + i];
        float mean = (float)(sum / (double)per);
        for (int k = 0; k < 6; k++) context->output0[n * 6 + k] = mean * (float)(k + 1);
        context->num_dets[n] = (int32_t)(n + 1);
    }
    return ok(err);
}
#endif

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

int trt_build_serialized(const trt_build_config *config, trt_blob **out, trt_error *err) {
    INJECT("trt_build_serialized");
    if (config == NULL || config->onnx_path == NULL) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "build: null argument");
    long onnx = file_size(config->onnx_path);
    if (onnx <= 0) return fail(err, TRT_ERR_ONNX, "the ONNX parser refused %s (cannot read it)", config->onnx_path);
    if (config->int8 && config->calibration_cache_path != NULL && file_size(config->calibration_cache_path) <= 0) {
        return fail(err, TRT_ERR_IO, "cannot read the calibration cache %s", config->calibration_cache_path);
    }
    if (config->input_name != NULL) {
        if (strcmp(config->input_name, "images") != 0) return fail(err, TRT_ERR_INVALID_ARGUMENT, "the network has no input named %s", config->input_name);
        if (config->nb_dims != 4) return fail(err, TRT_ERR_INVALID_ARGUMENT, "%s", "optimisation profile: bad rank");
        for (int i = 0; i < 4; i++) {
            if (config->min_dims[i] > config->opt_dims[i] || config->opt_dims[i] > config->max_dims[i]) {
                return fail(err, TRT_ERR_TENSORRT, "%s", "the optimisation profile was refused (min <= opt <= max?)");
            }
        }
    }
    if (config->timing_cache_path != NULL) {
        FILE *f = fopen(config->timing_cache_path, "wb");
        if (f == NULL) return fail(err, TRT_ERR_IO, "cannot write the timing cache %s", config->timing_cache_path);
        fputs("FAKE-TIMING-CACHE\n", f);
        fclose(f);
    }
    /* A YOLO-shaped engine from a marked "ONNX" file (see the header comment). */
    char kind[96] = "";
    FILE *model = fopen(config->onnx_path, "rb");
    if (model != NULL) {
        char first[128] = "";
        int nc = 0, anchors = 0;
        if (fgets(first, sizeof first, model) != NULL &&
            sscanf(first, "FRACTURE-FAKE-YOLO nc=%d anchors=%d", &nc, &anchors) == 2) {
            snprintf(kind, sizeof kind, "yolo nc=%d anchors=%d ", nc, anchors);
        }
        fclose(model);
    }
    trt_blob *blob = calloc(1, sizeof(trt_blob));
    blob->data = malloc(256);
    int n = snprintf(blob->data, 256, "%s%sfp16=%d int8=%d calibrated=%d onnx_bytes=%ld\n", ENGINE_MAGIC,
                     kind, (int)config->fp16, (int)config->int8, config->calibration_cache_path != NULL, onnx);
    blob->size = (size_t)n;
    *out = blob;
    g_live++;
    return ok(err);
}

const void *trt_blob_data(const trt_blob *blob) { return blob == NULL ? NULL : blob->data; }
size_t trt_blob_size(const trt_blob *blob) { return blob == NULL ? 0 : blob->size; }

void trt_blob_destroy(trt_blob *blob) {
    if (blob != NULL) {
        free(blob->data);
        free(blob);
        g_live--;
    }
}
