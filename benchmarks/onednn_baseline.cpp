// SPDX-License-Identifier: Apache-2.0
// oneDNN's int8 matmul for the GEMM suite's baseline (see onednn_baseline.hpp).
#include "onednn_baseline.hpp"

#include <stdexcept>
#include <vector>

#if CMX_BENCH_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace cmx::bench {

#if CMX_BENCH_HAVE_ONEDNN

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

const char* runtime_name(unsigned runtime) {
  switch (runtime) {
    case DNNL_RUNTIME_OMP:
      return "OpenMP";
    case DNNL_RUNTIME_TBB:
      return "oneTBB";
    case DNNL_RUNTIME_SEQ:
      return "sequential";
    case DNNL_RUNTIME_THREADPOOL:
      return "threadpool";
    default:
      return "other";
  }
}

}  // namespace

struct OneDnnMatmul::State {
  dnnl::stream stream{cpu_engine()};
  dnnl::matmul::primitive_desc descriptor;
  dnnl::matmul primitive;
  dnnl::memory::desc a_desc;
  dnnl::memory weights;  // in the primitive's own layout
  dnnl::memory::desc c_desc;
};

bool have_onednn() noexcept {
  return true;
}

std::string onednn_description() {
  const dnnl_version_t* version = dnnl_version();
  return "oneDNN " + std::to_string(version->major) + "." + std::to_string(version->minor) + "." +
         std::to_string(version->patch) + " (CPU runtime: " + runtime_name(version->cpu_runtime) +
         ", its default thread count: every hardware thread)";
}

OneDnnMatmul::OneDnnMatmul(int m, int n, int k, std::span<const std::int8_t> b,
                           std::span<const float> b_scales)
    : state_(std::make_unique<State>()) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  state_->c_desc = dnnl::memory::desc({m, n}, dt::f32, tag::ab);
  state_->a_desc = dnnl::memory::desc({m, k}, dt::s8, tag::ab);
  const dnnl::memory::desc b_user({k, n}, dt::s8, tag::ba);  // B [n, k] row-major = B^T [k, n]
  const dnnl::memory::desc b_any({k, n}, dt::s8, tag::any);
  dnnl::primitive_attr attributes;
  attributes.set_output_scales(1 << 1, std::vector<float>(b_scales.begin(), b_scales.end()));
  state_->descriptor = dnnl::matmul::primitive_desc(
      dnnl::matmul::desc(state_->a_desc, b_any, state_->c_desc), attributes, cpu_engine());
  state_->primitive = dnnl::matmul(state_->descriptor);
  dnnl::memory user(b_user, cpu_engine(), const_cast<std::int8_t*>(b.data()));
  state_->weights = dnnl::memory(state_->descriptor.weights_desc(), cpu_engine());
  dnnl::reorder(user, state_->weights).execute(state_->stream, user, state_->weights);
  state_->stream.wait();
}

OneDnnMatmul::~OneDnnMatmul() = default;
OneDnnMatmul::OneDnnMatmul(OneDnnMatmul&&) noexcept = default;
OneDnnMatmul& OneDnnMatmul::operator=(OneDnnMatmul&&) noexcept = default;

void OneDnnMatmul::run(const std::int8_t* a, float* c) {
  dnnl::memory a_memory(state_->a_desc, cpu_engine(), const_cast<std::int8_t*>(a));
  dnnl::memory c_memory(state_->c_desc, cpu_engine(), c);
  state_->primitive.execute(
      state_->stream,
      {{DNNL_ARG_SRC, a_memory}, {DNNL_ARG_WEIGHTS, state_->weights}, {DNNL_ARG_DST, c_memory}});
  state_->stream.wait();
}

std::string OneDnnMatmul::implementation() const {
  return state_->descriptor.impl_info_str();
}

#else  // without oneDNN

struct OneDnnMatmul::State {};

bool have_onednn() noexcept {
  return false;
}

std::string onednn_description() {
  return "none: oneDNN (libdnnl-dev) was not found when cmx_bench was configured";
}

OneDnnMatmul::OneDnnMatmul(int, int, int, std::span<const std::int8_t>, std::span<const float>) {
  throw std::runtime_error("cmx_bench was built without oneDNN");
}
OneDnnMatmul::~OneDnnMatmul() = default;
OneDnnMatmul::OneDnnMatmul(OneDnnMatmul&&) noexcept = default;
OneDnnMatmul& OneDnnMatmul::operator=(OneDnnMatmul&&) noexcept = default;
void OneDnnMatmul::run(const std::int8_t*, float*) {}
std::string OneDnnMatmul::implementation() const {
  return "none";
}

#endif

void scale_rows(const float* c, std::span<const float> a_scales, int n,
                std::span<const std::size_t> out_rows, bf16* out) {
  const std::size_t width = static_cast<std::size_t>(n);
  for (std::size_t i = 0; i < out_rows.size(); ++i) {
    const float* row = c + i * width;
    bf16* destination = out + out_rows[i] * width;
    const float scale = a_scales[i];
    for (std::size_t j = 0; j < width; ++j) destination[j] = bf16::from_float(row[j] * scale);
  }
}

}  // namespace cmx::bench
