// SPDX-License-Identifier: Apache-2.0
// The MLA decode a user would assemble from oneDNN, per request: gather the paged rows into a
// contiguous K, S = softmax_scale * Q K^T (bf16 matmul, fp32 out), the causal tail masked,
// P = softmax(S) (fp32 in, bf16 out), O = P V (bf16 matmul, V the first 512 columns of K,
// bf16 out). Primitives are made once per distinct length, outside the timed loop.
#pragma once

#if defined(CMX_BENCH_HAVE_ONEDNN)

#include <algorithm>
#include <cstring>
#include <limits>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>
#include <span>
#include <vector>

#include "cmx/cmx.hpp"
#include "mla_bench.hpp"

namespace cmx::bench {

class OnednnMlaBaseline {
 public:
  explicit OnednnMlaBaseline(const MlaInputs& inputs)
      : inputs_(inputs), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    const int rows = inputs.shape.rows();
    std::int32_t longest = 1;
    for (const std::int32_t length : inputs.seqlens) {
      longest = std::max(longest, length);
      if (!primitives_.contains(length))
        primitives_.emplace(length, Primitives(engine_, rows, length, inputs.softmax_scale));
    }
    keys_.resize(static_cast<std::size_t>(longest) * attention::kKvDim);
    scores_.resize(static_cast<std::size_t>(rows) * longest);
    probabilities_.resize(static_cast<std::size_t>(rows) * longest);
  }

  /// Decodes the whole batch into o [batch][s_q][h_q][512].
  void run(std::span<bf16> o) {
    const attention::MlaDecodeShape& shape = inputs_.shape;
    const std::size_t rows = static_cast<std::size_t>(shape.rows());
    for (int b = 0; b < shape.batch; ++b) {
      const std::int32_t length = inputs_.seqlens[static_cast<std::size_t>(b)];
      gather_keys(b, length);
      Primitives& p = primitives_.at(length);
      p.q.set_data_handle(const_cast<bf16*>(inputs_.q.data()) + b * rows * attention::kKvDim);
      p.keys.set_data_handle(keys_.data());
      p.values.set_data_handle(keys_.data());
      p.scores.set_data_handle(scores_.data());
      p.probabilities.set_data_handle(probabilities_.data());
      p.out.set_data_handle(o.data() + b * rows * attention::kLatentDim);
      p.qk.execute(stream_,
                   {{DNNL_ARG_SRC, p.q}, {DNNL_ARG_WEIGHTS, p.keys}, {DNNL_ARG_DST, p.scores}});
      stream_.wait();
      mask_causal_tail(length);
      p.softmax.execute(stream_, {{DNNL_ARG_SRC, p.scores}, {DNNL_ARG_DST, p.probabilities}});
      p.pv.execute(
          stream_,
          {{DNNL_ARG_SRC, p.probabilities}, {DNNL_ARG_WEIGHTS, p.values}, {DNNL_ARG_DST, p.out}});
      stream_.wait();
    }
  }

 private:
  using dims = dnnl::memory::dims;
  using dt = dnnl::memory::data_type;

  // The primitives and memory objects for one length; data handles set per request.
  struct Primitives {
    Primitives(const dnnl::engine& engine, int rows, int length, float scale) {
      const dnnl::memory::dim m = rows, n = length, k = attention::kKvDim,
                              v = attention::kLatentDim;
      const dnnl::memory::desc q_md({m, k}, dt::bf16, dims{k, 1});
      const dnnl::memory::desc keys_md({k, n}, dt::bf16, dims{1, k});    // K^T of [n][576]
      const dnnl::memory::desc values_md({n, v}, dt::bf16, dims{k, 1});  // first 512 columns
      const dnnl::memory::desc scores_md({m, n}, dt::f32, dims{n, 1});
      const dnnl::memory::desc probabilities_md({m, n}, dt::bf16, dims{n, 1});
      const dnnl::memory::desc out_md({m, v}, dt::bf16, dims{v, 1});
      dnnl::primitive_attr scaled;
      scaled.set_output_scales(0, {scale});
      qk = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(q_md, keys_md, scores_md),
                                                     scaled, engine));
      softmax = dnnl::softmax_v2_forward(dnnl::softmax_v2_forward::primitive_desc(
          dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference,
                                         dnnl::algorithm::softmax_accurate, scores_md,
                                         probabilities_md, 1),
          engine));
      pv = dnnl::matmul(dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(probabilities_md, values_md, out_md), engine));
      this->q = dnnl::memory(q_md, engine, nullptr);
      keys = dnnl::memory(keys_md, engine, nullptr);
      values = dnnl::memory(values_md, engine, nullptr);
      scores = dnnl::memory(scores_md, engine, nullptr);
      probabilities = dnnl::memory(probabilities_md, engine, nullptr);
      out = dnnl::memory(out_md, engine, nullptr);
    }
    dnnl::matmul qk, pv;
    dnnl::softmax_v2_forward softmax;
    dnnl::memory q, keys, values, scores, probabilities, out;
  };

  // Request b's first `length` cached rows, block by block, into keys_ [length][576].
  void gather_keys(int b, std::int32_t length) {
    const std::size_t row_bytes = attention::kKvDim * sizeof(bf16);
    for (std::int32_t position = 0; position < length; position += inputs_.block_size) {
      const std::int32_t block =
          inputs_.block_table[static_cast<std::size_t>(b) * inputs_.max_blocks_per_seq +
                              position / inputs_.block_size];
      const std::int32_t rows = std::min(inputs_.block_size, length - position);
      std::memcpy(keys_.data() + static_cast<std::size_t>(position) * attention::kKvDim,
                  inputs_.kv_cache.data() +
                      static_cast<std::size_t>(block) * inputs_.block_size * attention::kKvDim,
                  rows * row_bytes);
    }
  }

  // Query position i sees keys < length - (s_q - 1 - i): the rest of its row is -inf.
  void mask_causal_tail(std::int32_t length) {
    const attention::MlaDecodeShape& shape = inputs_.shape;
    for (int row = 0; row < shape.rows(); ++row) {
      const int hidden = shape.num_queries - 1 - row / shape.num_heads;
      float* scores = scores_.data() + static_cast<std::size_t>(row) * length;
      std::fill(scores + std::max(0, length - hidden), scores + length,
                -std::numeric_limits<float>::infinity());
    }
  }

  const MlaInputs& inputs_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::map<std::int32_t, Primitives> primitives_;  // by length
  std::vector<bf16> keys_;                         // [longest][576] the gathered rows
  std::vector<float> scores_;                      // [rows][length]
  std::vector<bf16> probabilities_;                // [rows][length]
};

}  // namespace cmx::bench

#endif  // CMX_BENCH_HAVE_ONEDNN
