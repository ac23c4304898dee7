// Tensor creation, host transfer and elementwise/reduction operations over at::Tensor.
#include <c10/core/CPUAllocator.h>

#include <cstring>

#include "cuda_ops.h"
#include "torch_internal.h"

namespace pn {

Tensor::Tensor() = default;
Tensor::Tensor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tensor::~Tensor() = default;
Tensor::Tensor(const Tensor&) = default;
Tensor& Tensor::operator=(const Tensor&) = default;
Tensor::Tensor(Tensor&&) noexcept = default;
Tensor& Tensor::operator=(Tensor&&) noexcept = default;

bool Tensor::defined() const { return impl_ && impl_->value.defined(); }
std::vector<int64_t> Tensor::shape() const {
  auto sizes = unwrap(*this).sizes();
  return {sizes.begin(), sizes.end()};
}
DType Tensor::dtype() const { return fromScalarType(unwrap(*this).scalar_type()); }
std::string Tensor::device() const { return unwrap(*this).device().str(); }
bool Tensor::isCpu() const { return unwrap(*this).device().is_cpu(); }
int64_t Tensor::numel() const { return unwrap(*this).numel(); }
size_t Tensor::nbytes() const {
  const auto& t = unwrap(*this);
  return static_cast<size_t>(t.numel()) * t.element_size();
}
bool Tensor::requiresGrad() const { return unwrap(*this).requires_grad(); }

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::Uint8: return "uint8";
    case DType::Int8: return "int8";
    case DType::Int16: return "int16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Bool: return "bool";
  }
  return "unknown";
}

bool parseDType(const std::string& name, DType* out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"uint8", DType::Uint8},     {"int8", DType::Int8},       {"int16", DType::Int16},
      {"int32", DType::Int32},     {"int64", DType::Int64},     {"float16", DType::Float16},
      {"bfloat16", DType::BFloat16}, {"float32", DType::Float32}, {"float64", DType::Float64},
      {"bool", DType::Bool}};
  for (const auto& [n, d] : kNames) {
    if (name == n) {
      *out = d;
      return true;
    }
  }
  return false;
}

size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::Uint8: case DType::Int8: case DType::Bool: return 1;
    case DType::Int16: case DType::Float16: case DType::BFloat16: return 2;
    case DType::Int32: case DType::Float32: return 4;
    case DType::Int64: case DType::Float64: return 8;
  }
  return 0;
}

at::ScalarType toScalarType(DType dtype) {
  switch (dtype) {
    case DType::Uint8: return at::kByte;
    case DType::Int8: return at::kChar;
    case DType::Int16: return at::kShort;
    case DType::Int32: return at::kInt;
    case DType::Int64: return at::kLong;
    case DType::Float16: return at::kHalf;
    case DType::BFloat16: return at::kBFloat16;
    case DType::Float32: return at::kFloat;
    case DType::Float64: return at::kDouble;
    case DType::Bool: return at::kBool;
  }
  throw Error("unknown dtype");
}

DType fromScalarType(at::ScalarType type) {
  switch (type) {
    case at::kByte: return DType::Uint8;
    case at::kChar: return DType::Int8;
    case at::kShort: return DType::Int16;
    case at::kInt: return DType::Int32;
    case at::kLong: return DType::Int64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kBool: return DType::Bool;
    default: throw Error(std::string("tensor dtype ") + c10::toString(type) + " has no JS counterpart");
  }
}

at::Device parseDevice(const std::string& device) {
  return guard([&] {
    at::Device parsed(device);
    if (parsed.is_cuda()) {
      if (!torch::cuda::is_available()) {
        throw Error("device '" + device + "' requested but CUDA is not available (this LibTorch " +
                    (torch::cuda::device_count() == 0 && !at::hasCUDA() ? "was built without CUDA" : "sees no GPU") +
                    ")");
      }
      const auto count = static_cast<int>(torch::cuda::device_count());
      if (parsed.has_index() && parsed.index() >= count) {
        throw Error("device '" + device + "' does not exist: " + std::to_string(count) + " CUDA device(s) visible");
      }
    } else if (!parsed.is_cpu()) {
      throw Error("unsupported device '" + device + "': use 'cpu', 'cuda' or 'cuda:N'");
    }
    return parsed;
  });
}

static int64_t shapeNumel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw Error("shape dimensions must be >= 0");
    n *= d;
  }
  return n;
}

Tensor fromHost(const void* data, size_t byteLength, DType srcType, const std::vector<int64_t>& shape, DType dstType,
                const std::string& device) {
  return guard([&] {
    const int64_t numel = shapeNumel(shape);
    if (static_cast<size_t>(numel) * dtypeSize(srcType) != byteLength) {
      throw Error("data holds " + std::to_string(byteLength / dtypeSize(srcType)) + " elements but shape needs " +
                  std::to_string(numel));
    }
    const at::Device dev = parseDevice(device);
    const auto options = at::TensorOptions().dtype(toScalarType(dstType)).device(dev);
    at::Tensor out = at::empty(shape, options);
    if (numel == 0) return wrap(out);
    if (srcType == dstType && dev.is_cpu()) {
      std::memcpy(out.data_ptr(), data, byteLength);
    } else {
      // A view of the caller's memory, valid only during this call: copy_ converts and moves
      // it in one pass, so nothing keeps a pointer into JS-owned memory afterwards.
      at::Tensor source = at::from_blob(const_cast<void*>(data), shape, at::TensorOptions().dtype(toScalarType(srcType)));
      out.copy_(source);
    }
    return wrap(out);
  });
}

void toHost(const Tensor& tensor, void* dst, size_t byteLength, DType dstType) {
  guard([&] {
    const at::Tensor& t = unwrap(tensor);
    if (static_cast<size_t>(t.numel()) * dtypeSize(dstType) != byteLength) {
      throw Error("destination holds " + std::to_string(byteLength / dtypeSize(dstType)) +
                  " elements but the tensor has " + std::to_string(t.numel()));
    }
    if (t.numel() == 0) return 0;
    if (t.device().is_cpu() && t.is_contiguous() && fromScalarType(t.scalar_type()) == dstType) {
      std::memcpy(dst, t.data_ptr(), byteLength);
    } else {
      at::Tensor target = at::from_blob(dst, t.sizes(), at::TensorOptions().dtype(toScalarType(dstType)));
      target.copy_(t.detach());
    }
    return 0;
  });
}

Tensor to(const Tensor& tensor, const std::string& device, DType dtype) {
  return guard([&] {
    const at::Device dev = parseDevice(device);
    return wrap(unwrap(tensor).to(dev, toScalarType(dtype)));
  });
}

Tensor filled(Fill fill, const std::vector<int64_t>& shape, DType dtype, const std::string& device) {
  return guard([&] {
    shapeNumel(shape);
    const auto options = at::TensorOptions().dtype(toScalarType(dtype)).device(parseDevice(device));
    switch (fill) {
      case Fill::Zeros: return wrap(at::zeros(shape, options));
      case Fill::Ones: return wrap(at::ones(shape, options));
      case Fill::Rand: return wrap(at::rand(shape, options));
      case Fill::Randn: return wrap(at::randn(shape, options));
    }
    throw Error("unknown fill");
  });
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  return guard([&] {
    const at::Tensor& x = unwrap(a);
    const at::Tensor& y = unwrap(b);
    switch (op) {
      case BinaryOp::Add: return wrap(x + y);
      case BinaryOp::Sub: return wrap(x - y);
      case BinaryOp::Mul: return wrap(x * y);
      case BinaryOp::Div: return wrap(x / y);
      case BinaryOp::Matmul: return wrap(at::matmul(x, y));
    }
    throw Error("unknown binary op");
  });
}

Tensor reduce(ReduceOp op, const Tensor& a, const std::vector<int64_t>& dims, bool keepDim) {
  return guard([&] {
    const at::Tensor& x = unwrap(a);
    if (dims.empty()) {
      switch (op) {
        case ReduceOp::Sum: return wrap(x.sum());
        case ReduceOp::Mean: return wrap(x.mean());
        case ReduceOp::Max: return wrap(x.max());
        case ReduceOp::Min: return wrap(x.min());
      }
    }
    switch (op) {
      case ReduceOp::Sum: return wrap(x.sum(dims, keepDim));
      case ReduceOp::Mean: return wrap(x.mean(dims, keepDim));
      case ReduceOp::Max: return wrap(x.amax(dims, keepDim));
      case ReduceOp::Min: return wrap(x.amin(dims, keepDim));
    }
    throw Error("unknown reduce op");
  });
}

Tensor reshape(const Tensor& a, const std::vector<int64_t>& shape) {
  return guard([&] { return wrap(unwrap(a).reshape(shape)); });
}

Tensor clone(const Tensor& a) {
  return guard([&] { return wrap(unwrap(a).clone()); });
}

double item(const Tensor& a) {
  return guard([&] { return unwrap(a).item<double>(); });
}

Tensor normalizeU8(const Tensor& images, float mean, float std) {
  return guard([&] {
    const at::Tensor& x = unwrap(images);
    if (x.scalar_type() != at::kByte) throw Error("normalizeU8 expects a uint8 tensor, got " + std::string(c10::toString(x.scalar_type())));
    if (!(std > 0)) throw Error("normalizeU8: std must be > 0");
#ifdef PN_WITH_CUDA
    if (x.is_cuda()) {
      at::Tensor src = x.contiguous();
      at::Tensor out = at::empty(src.sizes(), src.options().dtype(at::kFloat));
      cuda::normalizeU8(src.data_ptr<uint8_t>(), out.data_ptr<float>(), src.numel(), mean, std, cuda::currentStream(src.device().index()));
      return wrap(out);
    }
#endif
    // Scale and shift folded into one multiply and one add, both in place on the converted copy.
    const float scale = 1.0f / (255.0f * std);
    const float shift = -mean / std;
    return wrap(x.to(at::kFloat).mul_(scale).add_(shift));
  });
}

}  // namespace pn

namespace pn {

Tensor fromHostUint16(const uint16_t* data, size_t count, const std::vector<int64_t>& shape, DType dstType,
                      const std::string& device) {
  return guard([&] {
    if (static_cast<size_t>(shapeNumel(shape)) != count) {
      throw Error("data holds " + std::to_string(count) + " elements but shape needs " + std::to_string(shapeNumel(shape)));
    }
    const at::Device dev = parseDevice(device);
    at::Tensor widened = at::empty(shape, at::TensorOptions().dtype(at::kInt));
    int32_t* out = widened.data_ptr<int32_t>();
    at::parallel_for(0, static_cast<int64_t>(count), 1 << 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = data[i];
    });
    return wrap(widened.to(dev, toScalarType(dstType)));
  });
}

}  // namespace pn

namespace pn {

void* allocHost(size_t bytes) {
  return guard([&] { return c10::GetCPUAllocator()->raw_allocate(bytes == 0 ? 1 : bytes); });
}

void freeHost(void* data) { c10::GetCPUAllocator()->raw_deallocate(data); }

void* exclusiveData(const Tensor& tensor, DType dtype) {
  if (!tensor.defined()) return nullptr;
  const at::Tensor& t = unwrap(tensor);
  const bool sameBytes = fromScalarType(t.scalar_type()) == dtype || (t.scalar_type() == at::kBool && dtype == DType::Uint8);
  if (!t.device().is_cpu() || !sameBytes || !t.is_contiguous() || t.numel() == 0) return nullptr;
  // Sole owner of both the TensorImpl (no other at::Tensor handle) and the storage (no views).
  if (t.use_count() != 1 || !t.has_storage() || t.storage().use_count() != 1) return nullptr;
  return t.data_ptr();
}

}  // namespace pn
