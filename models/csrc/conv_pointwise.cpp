// The one libtorch operator the tch bindings do not reach: oneDNN's convolution with a
// prepacked weight and a fused activation (`mkldnn::_convolution_pointwise`, what PyTorch's
// inductor emits for CPU inference). It is registered in libtorch_cpu but not in
// native_functions.yaml, so it is called here through the dispatcher, boxed (no C++ signature
// to keep in step with libtorch). Used by models/src/packed_conv.rs.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>

#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {
void set_error(char *buf, size_t len, const char *msg) {
  if (buf != nullptr && len > 0) {
    std::strncpy(buf, msg, len - 1);
    buf[len - 1] = '\0';
  }
}
} // namespace

// y = attr(conv2d(x, w, b)); `w` an mkldnn tensor from mkldnn_reorder_conv2d_weight, `b` may be
// null, `attr` "none", "relu" or "swish" (SiLU). Returns a new tensor (channels-last when `x`
// is), or null with the reason in `err`.
extern "C" at::Tensor *fracture_conv_pointwise(const at::Tensor *x, const at::Tensor *w,
                                               const at::Tensor *b, const int64_t *padding,
                                               const int64_t *stride, const int64_t *dilation,
                                               int64_t groups, const char *attr, char *err,
                                               size_t err_len) {
  try {
    static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow(
        "mkldnn::_convolution_pointwise", "");
    torch::jit::Stack stack;
    stack.reserve(10);
    stack.emplace_back(*x);
    stack.emplace_back(*w);
    stack.emplace_back(b != nullptr ? c10::IValue(*b) : c10::IValue());
    stack.emplace_back(std::vector<int64_t>(padding, padding + 2));
    stack.emplace_back(std::vector<int64_t>(stride, stride + 2));
    stack.emplace_back(std::vector<int64_t>(dilation, dilation + 2));
    stack.emplace_back(groups);
    stack.emplace_back(std::string(attr));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(c10::IValue()); // algorithm: none
    op.callBoxed(&stack);
    return new at::Tensor(stack.back().toTensor());
  } catch (const std::exception &e) {
    set_error(err, err_len, e.what());
    return nullptr;
  } catch (...) {
    set_error(err, err_len, "unknown C++ exception");
    return nullptr;
  }
}
