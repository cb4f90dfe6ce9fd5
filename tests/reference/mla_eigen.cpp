// SPDX-License-Identifier: Apache-2.0
// The plain-loop MLA reference against a second one written with Eigen matrices (scores
// materialized as Q K^T, softmax, P V), both fp32: they differ only by summation order.
#include <doctest/doctest.h>

#include <Eigen/Dense>
#include <cmath>

#include "../attention/mla_harness.hpp"

namespace {

namespace attention = cmx::attention;
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// Request b's rows as matrices: Q [s_q * h_q][576] and its cached rows [length][576].
struct RequestMatrices {
  Matrix q, kv;
};

RequestMatrices gather(const cmx::test::MlaProblem& p, int b) {
  const auto& c = p.c;
  const int rows = c.num_queries * c.num_heads;
  const int length = c.seqlens[static_cast<std::size_t>(b)];
  RequestMatrices m{Matrix(rows, attention::kKvDim), Matrix(length, attention::kKvDim)};
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < attention::kKvDim; ++k)
      m.q(r, k) = p.q[(static_cast<std::size_t>(b) * rows + r) * attention::kKvDim + k].to_float();
  for (int j = 0; j < length; ++j) {
    const int block =
        p.block_table[static_cast<std::size_t>(b * p.max_blocks_per_seq + j / c.block_size)];
    const std::size_t row = static_cast<std::size_t>(block) * c.block_size + j % c.block_size;
    for (int k = 0; k < attention::kKvDim; ++k)
      m.kv(j, k) = p.kv_cache[row * attention::kKvDim + k].to_float();
  }
  return m;
}

TEST_CASE("the MLA reference agrees with an Eigen one that materializes the scores") {
  for (const cmx::test::MlaCase& c : std::vector<cmx::test::MlaCase>{
           {.batch = 2, .num_queries = 2, .num_heads = 16, .seqlens = {300, 2}},
           {.batch = 1, .num_queries = 4, .num_heads = 128, .seqlens = {70}, .block_size = 128},
           {.batch = 1, .num_queries = 1, .num_heads = 1, .seqlens = {16384}}}) {
    INFO(cmx::test::describe(c));
    cmx::test::MlaProblem p = cmx::test::make_problem(c);
    const cmx::reference::MlaDecodeResult expected = cmx::reference::mla_decode(p.args());
    for (int b = 0; b < c.batch; ++b) {
      const RequestMatrices m = gather(p, b);
      const int length = c.seqlens[static_cast<std::size_t>(b)];
      const Matrix scores = (m.q * m.kv.transpose()) * c.softmax_scale;  // [rows][length]
      for (int r = 0; r < m.q.rows(); ++r) {
        const int position = r / c.num_heads, head = r % c.num_heads;
        const int visible = length - (c.num_queries - 1 - position);  // causal
        const std::size_t row = static_cast<std::size_t>(b) * m.q.rows() + r;
        const std::size_t lse_index =
            (static_cast<std::size_t>(b) * c.num_heads + head) * c.num_queries + position;
        if (visible <= 0) {
          CHECK(std::isinf(expected.lse[lse_index]));
          continue;
        }
        const Eigen::RowVectorXf s = scores.row(r).head(visible);
        const float max = s.maxCoeff();
        const Eigen::RowVectorXf e = (s.array() - max).exp();
        const float lse = max + std::log(e.sum());
        const Eigen::RowVectorXf o =
            (e / e.sum()) * m.kv.topLeftCorner(visible, attention::kLatentDim);
        CHECK(std::abs(expected.lse[lse_index] - lse) <= 1e-4f * (1.0f + std::abs(lse)));
        for (int d = 0; d < attention::kLatentDim; ++d) {
          const float reference = expected.o[row * attention::kLatentDim + d];
          const float scale = expected.weighted_abs_v[row * attention::kLatentDim + d];
          REQUIRE_MESSAGE(std::abs(reference - o(d)) <= 1e-4f * scale + 1e-6f, "row ", r,
                          " column ", d, ": loops ", reference, ", Eigen ", o(d));
        }
      }
    }
  }
}

}  // namespace
