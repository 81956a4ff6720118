/* trt_shim.h: the C ABI between fracture-tensorrt (Rust) and TensorRT 10.x (C++).
 *
 * Two libraries implement it: trt_shim.cpp over TensorRT's C++ API (built only where the
 * TensorRT headers exist) and fake_shim.c (deterministic, for tests on machines without a
 * GPU). The Rust side loads either at run time with dlopen; nothing at build time links
 * TensorRT or CUDA into a Rust binary.
 *
 * Conventions:
 *  - every fallible function returns 0 on success and non-zero on failure, and fills the
 *    caller's trt_error (never NULL) with a code and a NUL-terminated message; no C++
 *    exception crosses this boundary;
 *  - handles are opaque; each *_create / *_deserialize has a matching *_destroy that
 *    accepts NULL;
 *  - "device" pointers are CUDA device memory in the real shim and host memory in the fake;
 *    the Rust side only passes them back to this ABI.
 */
#ifndef FRACTURE_TRT_SHIM_H
#define FRACTURE_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or struct below changes; the loader refuses a mismatch. */
#define TRT_SHIM_ABI_VERSION 1u

#define TRT_SHIM_MAX_DIMS 8
#define TRT_SHIM_MAX_NAME 256
#define TRT_SHIM_MAX_MESSAGE 2048

/* Error codes (trt_error.code). */
#define TRT_OK 0
#define TRT_ERR_INVALID_ARGUMENT 1 /* a NULL handle, an unknown tensor name, a bad shape */
#define TRT_ERR_TENSORRT 2         /* TensorRT refused (returned false / nullptr) */
#define TRT_ERR_CUDA 3             /* a CUDA runtime call failed */
#define TRT_ERR_EXCEPTION 4        /* a C++ exception was caught at the boundary */
#define TRT_ERR_IO 5               /* a file could not be read or written */
#define TRT_ERR_ONNX 6             /* the ONNX parser refused the model */

typedef struct trt_error {
    int32_t code;
    char message[TRT_SHIM_MAX_MESSAGE];
} trt_error;

/* Tensor IO modes (TensorRT's TensorIOMode values). */
#define TRT_IO_NONE 0
#define TRT_IO_INPUT 1
#define TRT_IO_OUTPUT 2

/* One IO tensor of an engine. dtype is TensorRT's DataType value (0 float, 1 half, 2 int8,
 * 3 int32, 4 bool, 5 uint8, 6 fp8, 7 bf16, 8 int64, 9 int4); dims use -1 for dynamic. */
typedef struct trt_tensor_desc {
    char name[TRT_SHIM_MAX_NAME];
    int32_t mode;
    int32_t dtype;
    int32_t nb_dims;
    int64_t dims[TRT_SHIM_MAX_DIMS];
} trt_tensor_desc;

typedef struct trt_runtime trt_runtime;
typedef struct trt_engine trt_engine;
typedef struct trt_context trt_context;
typedef struct trt_blob trt_blob;
typedef void *trt_stream;

/* ---- library ---------------------------------------------------------------------- */
uint32_t trt_shim_abi_version(void);
/* Creates the logger and registers TensorRT's plugins (initLibNvInferPlugins: RoiAlign,
 * ...). Idempotent. */
int trt_shim_init(trt_error *err);
/* TensorRT version of the loaded libnvinfer, e.g. "10.3.0". */
int trt_shim_trt_version(char *buf, size_t len, trt_error *err);
/* Name and compute capability of CUDA device `device`. */
int trt_shim_device_info(int32_t device, char *name, size_t name_len, int32_t *major,
                         int32_t *minor, trt_error *err);

/* ---- CUDA (so Rust never links CUDA) ---------------------------------------------- */
int trt_stream_create(trt_stream *out, trt_error *err);
int trt_stream_synchronize(trt_stream stream, trt_error *err);
void trt_stream_destroy(trt_stream stream);
int trt_device_malloc(size_t bytes, void **out, trt_error *err);
void trt_device_free(void *ptr);
int trt_memcpy_htod(void *dst, const void *src, size_t bytes, trt_error *err);
int trt_memcpy_dtoh(void *dst, const void *src, size_t bytes, trt_error *err);

/* ---- runtime ---------------------------------------------------------------------- */
int trt_runtime_create(trt_runtime **out, trt_error *err);
void trt_runtime_destroy(trt_runtime *runtime);
int trt_engine_deserialize(trt_runtime *runtime, const void *data, size_t len, trt_engine **out,
                           trt_error *err);
void trt_engine_destroy(trt_engine *engine);
int trt_engine_num_io_tensors(const trt_engine *engine, int32_t *out, trt_error *err);
int trt_engine_io_tensor(const trt_engine *engine, int32_t index, trt_tensor_desc *out,
                         trt_error *err);
int trt_context_create(trt_engine *engine, trt_context **out, trt_error *err);
void trt_context_destroy(trt_context *context);
int trt_context_set_input_shape(trt_context *context, const char *name, int32_t nb_dims,
                                const int64_t *dims, trt_error *err);
/* The shape of `name` as resolved by the context (outputs follow the input shapes set). */
int trt_context_tensor_shape(const trt_context *context, const char *name, int32_t *nb_dims,
                             int64_t *dims, trt_error *err);
int trt_context_set_tensor_address(trt_context *context, const char *name, void *ptr,
                                   trt_error *err);
int trt_context_enqueue_v3(trt_context *context, trt_stream stream, trt_error *err);

/* ---- builder ---------------------------------------------------------------------- */
typedef struct trt_build_config {
    const char *onnx_path;
    int32_t fp16;
    int32_t int8;
    /* INT8: a TensorRT calibration cache read by a cache-only entropy calibrator; NULL
     * otherwise. */
    const char *calibration_cache_path;
    /* One optimisation profile for input `input_name`: min/opt/max of nb_dims dims. */
    const char *input_name;
    int32_t nb_dims;
    int64_t min_dims[TRT_SHIM_MAX_DIMS];
    int64_t opt_dims[TRT_SHIM_MAX_DIMS];
    int64_t max_dims[TRT_SHIM_MAX_DIMS];
    /* Workspace memory-pool limit; 0 leaves TensorRT's default. */
    uint64_t workspace_bytes;
    /* Read if it exists, written after the build; NULL for none. */
    const char *timing_cache_path;
} trt_build_config;

/* Builds a serialised engine (plan) from an ONNX file. */
int trt_build_serialized(const trt_build_config *config, trt_blob **out, trt_error *err);
const void *trt_blob_data(const trt_blob *blob);
size_t trt_blob_size(const trt_blob *blob);
void trt_blob_destroy(trt_blob *blob);

#ifdef __cplusplus
}
#endif

#endif
