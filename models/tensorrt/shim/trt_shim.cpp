// trt_shim.cpp: the C ABI of trt_shim.h over TensorRT 10.x's C++ API (NvInfer.h,
// NvOnnxParser.h, NvInferPlugin.h) and the CUDA runtime. Every entry point runs inside
// `guarded`, which turns any C++ exception into a trt_error; TensorRT's own refusals
// (nullptr / false) become errors carrying the logger's recent error messages.

#include "trt_shim.h"

#include <NvInfer.h>
#include <NvInferPlugin.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

// Keeps TensorRT's recent warnings and errors so a failure can say why.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, char const *msg) noexcept override {
        if (severity > Severity::kWARNING || msg == nullptr) {
            return;
        }
        try {
            std::lock_guard<std::mutex> lock(mMutex);
            mRecent.emplace_back(msg);
            while (mRecent.size() > 16) {
                mRecent.pop_front();
            }
        } catch (...) {
            // Logging must never throw into TensorRT.
        }
    }

    // The recent messages, oldest first, and forgets them.
    std::string take() {
        std::lock_guard<std::mutex> lock(mMutex);
        std::string out;
        for (auto const &m : mRecent) {
            out += "\n  TensorRT: ";
            out += m;
        }
        mRecent.clear();
        return out;
    }

    void clear() {
        std::lock_guard<std::mutex> lock(mMutex);
        mRecent.clear();
    }

private:
    std::mutex mMutex;
    std::deque<std::string> mRecent;
};

Logger &logger() {
    static Logger instance;
    return instance;
}

int fail(trt_error *err, int32_t code, std::string const &message) {
    if (err != nullptr) {
        err->code = code;
        std::snprintf(err->message, sizeof(err->message), "%s", message.c_str());
    }
    return code;
}

// TensorRT refused: the message plus what its logger said.
int fail_trt(trt_error *err, std::string const &what) {
    return fail(err, TRT_ERR_TENSORRT, what + logger().take());
}

int fail_cuda(trt_error *err, char const *call, cudaError_t status) {
    return fail(err, TRT_ERR_CUDA,
                std::string(call) + " failed: " + cudaGetErrorName(status) + ": " +
                    cudaGetErrorString(status));
}

int ok(trt_error *err) {
    if (err != nullptr) {
        err->code = TRT_OK;
        err->message[0] = '\0';
    }
    return TRT_OK;
}

template <class F> int guarded(trt_error *err, F &&body) {
    try {
        return body();
    } catch (std::exception const &e) {
        return fail(err, TRT_ERR_EXCEPTION, std::string("C++ exception: ") + e.what());
    } catch (...) {
        return fail(err, TRT_ERR_EXCEPTION, "unknown C++ exception");
    }
}

template <class F> void guarded_void(F &&body) noexcept {
    try {
        body();
    } catch (...) {
        // Destructors report nothing; there is nobody to tell.
    }
}

bool read_file(char const *path, std::vector<char> &out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return false;
    }
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

bool write_file(char const *path, void const *data, size_t size) {
    std::string tmp = std::string(path) + ".partial";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) {
            return false;
        }
        out.write(static_cast<char const *>(data), static_cast<std::streamsize>(size));
        if (!out) {
            return false;
        }
    }
    return std::rename(tmp.c_str(), path) == 0;
}

bool to_dims(int32_t nb_dims, int64_t const *src, nvinfer1::Dims &out) {
    if (nb_dims < 0 || nb_dims > nvinfer1::Dims::MAX_DIMS || nb_dims > TRT_SHIM_MAX_DIMS) {
        return false;
    }
    out.nbDims = nb_dims;
    for (int32_t i = 0; i < nb_dims; ++i) {
        out.d[i] = src[i];
    }
    return true;
}

// Serves a calibration cache that `fracture calibrate` wrote; never runs calibration
// batches itself (getBatch returns false), so TensorRT must find every scale in the cache.
class CacheOnlyCalibrator final : public nvinfer1::IInt8EntropyCalibrator2 {
public:
    explicit CacheOnlyCalibrator(std::vector<char> cache) : mCache(std::move(cache)) {}
    int32_t getBatchSize() const noexcept override { return 1; }
    bool getBatch(void *[], char const *[], int32_t) noexcept override { return false; }
    void const *readCalibrationCache(std::size_t &length) noexcept override {
        length = mCache.size();
        return mCache.empty() ? nullptr : mCache.data();
    }
    void writeCalibrationCache(void const *, std::size_t) noexcept override {}

private:
    std::vector<char> mCache;
};

} // namespace

struct trt_runtime {
    std::unique_ptr<nvinfer1::IRuntime> runtime;
};
struct trt_engine {
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
};
struct trt_context {
    std::unique_ptr<nvinfer1::IExecutionContext> context;
};
struct trt_blob {
    std::unique_ptr<nvinfer1::IHostMemory> memory;
};

extern "C" {

uint32_t trt_shim_abi_version(void) { return TRT_SHIM_ABI_VERSION; }

int trt_shim_init(trt_error *err) {
    return guarded(err, [&] {
        static std::once_flag once;
        static bool plugins = false;
        std::call_once(once, [] { plugins = initLibNvInferPlugins(&logger(), ""); });
        if (!plugins) {
            return fail_trt(err, "initLibNvInferPlugins failed (RoiAlign and the other "
                                 "TensorRT plugins are unavailable)");
        }
        return ok(err);
    });
}

int trt_shim_trt_version(char *buf, size_t len, trt_error *err) {
    return guarded(err, [&] {
        if (buf == nullptr || len == 0) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "no buffer for the version");
        }
        int32_t v = getInferLibVersion();
        std::snprintf(buf, len, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
        return ok(err);
    });
}

int trt_shim_device_info(int32_t device, char *name, size_t name_len, int32_t *major,
                         int32_t *minor, trt_error *err) {
    return guarded(err, [&] {
        if (name == nullptr || name_len == 0 || major == nullptr || minor == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "device_info: null output");
        }
        cudaDeviceProp prop{};
        cudaError_t status = cudaGetDeviceProperties(&prop, device);
        if (status != cudaSuccess) {
            return fail_cuda(err, "cudaGetDeviceProperties", status);
        }
        std::snprintf(name, name_len, "%s", prop.name);
        *major = prop.major;
        *minor = prop.minor;
        return ok(err);
    });
}

int trt_stream_create(trt_stream *out, trt_error *err) {
    return guarded(err, [&] {
        if (out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "stream_create: null output");
        }
        cudaStream_t stream = nullptr;
        cudaError_t status = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        if (status != cudaSuccess) {
            return fail_cuda(err, "cudaStreamCreateWithFlags", status);
        }
        *out = stream;
        return ok(err);
    });
}

int trt_stream_synchronize(trt_stream stream, trt_error *err) {
    return guarded(err, [&] {
        cudaError_t status = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
        return status == cudaSuccess ? ok(err) : fail_cuda(err, "cudaStreamSynchronize", status);
    });
}

void trt_stream_destroy(trt_stream stream) {
    guarded_void([&] {
        if (stream != nullptr) {
            cudaStreamDestroy(static_cast<cudaStream_t>(stream));
        }
    });
}

int trt_device_malloc(size_t bytes, void **out, trt_error *err) {
    return guarded(err, [&] {
        if (out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "device_malloc: null output");
        }
        cudaError_t status = cudaMalloc(out, bytes == 0 ? 1 : bytes);
        return status == cudaSuccess ? ok(err) : fail_cuda(err, "cudaMalloc", status);
    });
}

void trt_device_free(void *ptr) {
    guarded_void([&] {
        if (ptr != nullptr) {
            cudaFree(ptr);
        }
    });
}

int trt_memcpy_htod(void *dst, const void *src, size_t bytes, trt_error *err) {
    return guarded(err, [&] {
        cudaError_t status = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
        return status == cudaSuccess ? ok(err) : fail_cuda(err, "cudaMemcpy (host to device)", status);
    });
}

int trt_memcpy_dtoh(void *dst, const void *src, size_t bytes, trt_error *err) {
    return guarded(err, [&] {
        cudaError_t status = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
        return status == cudaSuccess ? ok(err) : fail_cuda(err, "cudaMemcpy (device to host)", status);
    });
}

int trt_runtime_create(trt_runtime **out, trt_error *err) {
    return guarded(err, [&] {
        if (out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "runtime_create: null output");
        }
        logger().clear();
        std::unique_ptr<nvinfer1::IRuntime> rt(nvinfer1::createInferRuntime(logger()));
        if (!rt) {
            return fail_trt(err, "createInferRuntime failed");
        }
        *out = new trt_runtime{std::move(rt)};
        return ok(err);
    });
}

void trt_runtime_destroy(trt_runtime *runtime) {
    guarded_void([&] { delete runtime; });
}

int trt_engine_deserialize(trt_runtime *runtime, const void *data, size_t len, trt_engine **out,
                           trt_error *err) {
    return guarded(err, [&] {
        if (runtime == nullptr || data == nullptr || out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "engine_deserialize: null argument");
        }
        logger().clear();
        std::unique_ptr<nvinfer1::ICudaEngine> engine(
            runtime->runtime->deserializeCudaEngine(data, len));
        if (!engine) {
            return fail_trt(err, "deserializeCudaEngine failed (an engine built by another "
                                 "TensorRT version or for another GPU?)");
        }
        *out = new trt_engine{std::move(engine)};
        return ok(err);
    });
}

void trt_engine_destroy(trt_engine *engine) {
    guarded_void([&] { delete engine; });
}

int trt_engine_num_io_tensors(const trt_engine *engine, int32_t *out, trt_error *err) {
    return guarded(err, [&] {
        if (engine == nullptr || out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "num_io_tensors: null argument");
        }
        *out = engine->engine->getNbIOTensors();
        return ok(err);
    });
}

int trt_engine_io_tensor(const trt_engine *engine, int32_t index, trt_tensor_desc *out,
                         trt_error *err) {
    return guarded(err, [&] {
        if (engine == nullptr || out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "io_tensor: null argument");
        }
        auto const &e = *engine->engine;
        if (index < 0 || index >= e.getNbIOTensors()) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT,
                        "io_tensor: index " + std::to_string(index) + " out of range");
        }
        char const *name = e.getIOTensorName(index);
        if (name == nullptr) {
            return fail_trt(err, "getIOTensorName returned null");
        }
        std::snprintf(out->name, sizeof(out->name), "%s", name);
        out->mode = static_cast<int32_t>(e.getTensorIOMode(name));
        out->dtype = static_cast<int32_t>(e.getTensorDataType(name));
        nvinfer1::Dims d = e.getTensorShape(name);
        if (d.nbDims < 0 || d.nbDims > TRT_SHIM_MAX_DIMS) {
            return fail_trt(err, std::string("getTensorShape failed for ") + name);
        }
        out->nb_dims = d.nbDims;
        for (int32_t i = 0; i < d.nbDims; ++i) {
            out->dims[i] = d.d[i];
        }
        return ok(err);
    });
}

int trt_context_create(trt_engine *engine, trt_context **out, trt_error *err) {
    return guarded(err, [&] {
        if (engine == nullptr || out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "context_create: null argument");
        }
        logger().clear();
        std::unique_ptr<nvinfer1::IExecutionContext> ctx(engine->engine->createExecutionContext());
        if (!ctx) {
            return fail_trt(err, "createExecutionContext failed (out of device memory?)");
        }
        *out = new trt_context{std::move(ctx)};
        return ok(err);
    });
}

void trt_context_destroy(trt_context *context) {
    guarded_void([&] { delete context; });
}

int trt_context_set_input_shape(trt_context *context, const char *name, int32_t nb_dims,
                                const int64_t *dims, trt_error *err) {
    return guarded(err, [&] {
        if (context == nullptr || name == nullptr || (dims == nullptr && nb_dims > 0)) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "set_input_shape: null argument");
        }
        nvinfer1::Dims d{};
        if (!to_dims(nb_dims, dims, d)) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT,
                        "set_input_shape: " + std::to_string(nb_dims) + " dimensions");
        }
        logger().clear();
        if (!context->context->setInputShape(name, d)) {
            return fail_trt(err, std::string("setInputShape refused the shape of ") + name +
                                     " (outside the optimisation profile, or not an input?)");
        }
        return ok(err);
    });
}

int trt_context_tensor_shape(const trt_context *context, const char *name, int32_t *nb_dims,
                             int64_t *dims, trt_error *err) {
    return guarded(err, [&] {
        if (context == nullptr || name == nullptr || nb_dims == nullptr || dims == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "tensor_shape: null argument");
        }
        nvinfer1::Dims d = context->context->getTensorShape(name);
        if (d.nbDims < 0 || d.nbDims > TRT_SHIM_MAX_DIMS) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, std::string("no tensor named ") + name);
        }
        *nb_dims = d.nbDims;
        for (int32_t i = 0; i < d.nbDims; ++i) {
            dims[i] = d.d[i];
        }
        return ok(err);
    });
}

int trt_context_set_tensor_address(trt_context *context, const char *name, void *ptr,
                                   trt_error *err) {
    return guarded(err, [&] {
        if (context == nullptr || name == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "set_tensor_address: null argument");
        }
        logger().clear();
        if (!context->context->setTensorAddress(name, ptr)) {
            return fail_trt(err, std::string("setTensorAddress refused ") + name);
        }
        return ok(err);
    });
}

int trt_context_enqueue_v3(trt_context *context, trt_stream stream, trt_error *err) {
    return guarded(err, [&] {
        if (context == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "enqueue_v3: null context");
        }
        logger().clear();
        if (!context->context->enqueueV3(static_cast<cudaStream_t>(stream))) {
            return fail_trt(err, "enqueueV3 failed");
        }
        return ok(err);
    });
}

int trt_build_serialized(const trt_build_config *config, trt_blob **out, trt_error *err) {
    return guarded(err, [&] {
        if (config == nullptr || config->onnx_path == nullptr || out == nullptr) {
            return fail(err, TRT_ERR_INVALID_ARGUMENT, "build: null argument");
        }
        logger().clear();
        std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
        if (!builder) {
            return fail_trt(err, "createInferBuilder failed");
        }
        // TensorRT 10 networks are always explicit-batch; no creation flags.
        std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(0));
        if (!network) {
            return fail_trt(err, "createNetworkV2 failed");
        }
        std::unique_ptr<nvonnxparser::IParser> parser(
            nvonnxparser::createParser(*network, logger()));
        if (!parser) {
            return fail_trt(err, "nvonnxparser::createParser failed");
        }
        if (!parser->parseFromFile(config->onnx_path,
                                   static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
            std::string msg = std::string("the ONNX parser refused ") + config->onnx_path;
            for (int i = 0; i < parser->getNbErrors(); ++i) {
                auto const *e = parser->getError(i);
                msg += "\n  ONNX: ";
                msg += e->desc();
                if (e->nodeName() != nullptr && e->nodeName()[0] != '\0') {
                    msg += std::string(" (node ") + e->nodeName() + ")";
                }
            }
            return fail(err, TRT_ERR_ONNX, msg + logger().take());
        }
        std::unique_ptr<nvinfer1::IBuilderConfig> cfg(builder->createBuilderConfig());
        if (!cfg) {
            return fail_trt(err, "createBuilderConfig failed");
        }
        if (config->workspace_bytes > 0) {
            cfg->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE,
                                    static_cast<size_t>(config->workspace_bytes));
        }
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
        // Weak typing (precision flags, implicit INT8 calibration) is deprecated late in
        // TensorRT 10 in favour of strongly typed and Q/DQ networks; it is still supported and
        // is what JetPack 6's TensorRT 10.3 offers.
        if (config->fp16) {
            cfg->setFlag(nvinfer1::BuilderFlag::kFP16);
        }
        std::unique_ptr<CacheOnlyCalibrator> calibrator;
        if (config->int8) {
            cfg->setFlag(nvinfer1::BuilderFlag::kINT8);
            if (config->calibration_cache_path != nullptr) {
                std::vector<char> cache;
                if (!read_file(config->calibration_cache_path, cache) || cache.empty()) {
                    return fail(err, TRT_ERR_IO,
                                std::string("cannot read the calibration cache ") +
                                    config->calibration_cache_path);
                }
                calibrator = std::make_unique<CacheOnlyCalibrator>(std::move(cache));
                cfg->setInt8Calibrator(calibrator.get());
            }
        }
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
        if (config->input_name != nullptr) {
            bool found = false;
            for (int32_t i = 0; i < network->getNbInputs(); ++i) {
                char const *n = network->getInput(i)->getName();
                found = found || (n != nullptr && std::strcmp(n, config->input_name) == 0);
            }
            if (!found) {
                return fail(err, TRT_ERR_INVALID_ARGUMENT,
                            std::string("the network has no input named ") + config->input_name);
            }
            nvinfer1::Dims mn{}, op{}, mx{};
            if (!to_dims(config->nb_dims, config->min_dims, mn) ||
                !to_dims(config->nb_dims, config->opt_dims, op) ||
                !to_dims(config->nb_dims, config->max_dims, mx)) {
                return fail(err, TRT_ERR_INVALID_ARGUMENT, "optimisation profile: bad rank");
            }
            nvinfer1::IOptimizationProfile *profile = builder->createOptimizationProfile();
            using nvinfer1::OptProfileSelector;
            if (profile == nullptr ||
                !profile->setDimensions(config->input_name, OptProfileSelector::kMIN, mn) ||
                !profile->setDimensions(config->input_name, OptProfileSelector::kOPT, op) ||
                !profile->setDimensions(config->input_name, OptProfileSelector::kMAX, mx) ||
                cfg->addOptimizationProfile(profile) < 0) {
                return fail_trt(err, "the optimisation profile was refused (min <= opt <= max?)");
            }
        }
        std::unique_ptr<nvinfer1::ITimingCache> timing;
        if (config->timing_cache_path != nullptr) {
            std::vector<char> blob;
            bool have = read_file(config->timing_cache_path, blob);
            timing.reset(cfg->createTimingCache(have ? blob.data() : nullptr,
                                                have ? blob.size() : 0));
            if (!timing || !cfg->setTimingCache(*timing, false)) {
                return fail_trt(err, std::string("the timing cache ") +
                                         config->timing_cache_path + " was refused");
            }
        }
        std::unique_ptr<nvinfer1::IHostMemory> plan(
            builder->buildSerializedNetwork(*network, *cfg));
        if (!plan || plan->size() == 0) {
            return fail_trt(err, "buildSerializedNetwork failed");
        }
        if (timing) {
            nvinfer1::ITimingCache const *used = cfg->getTimingCache();
            std::unique_ptr<nvinfer1::IHostMemory> bytes(used ? used->serialize() : nullptr);
            if (bytes &&
                !write_file(config->timing_cache_path, bytes->data(), bytes->size())) {
                return fail(err, TRT_ERR_IO,
                            std::string("cannot write the timing cache ") +
                                config->timing_cache_path);
            }
        }
        *out = new trt_blob{std::move(plan)};
        return ok(err);
    });
}

const void *trt_blob_data(const trt_blob *blob) {
    return blob == nullptr ? nullptr : blob->memory->data();
}

size_t trt_blob_size(const trt_blob *blob) {
    return blob == nullptr ? 0 : blob->memory->size();
}

void trt_blob_destroy(trt_blob *blob) {
    guarded_void([&] { delete blob; });
}

} // extern "C"
