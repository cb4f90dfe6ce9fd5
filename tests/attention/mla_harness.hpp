// SPDX-License-Identifier: Apache-2.0
// Shared by the attention tests: random paged caches with shuffled block tables, the
// tolerance check against the reference, and every device tier this CPU runs.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cmx/cmx.hpp"
#include "cmx/reference/mla.hpp"

namespace cmx::test {

namespace attention = cmx::attention;

/// One decode batch to build.
struct MlaCase {
  int batch = 1;
  int num_queries = 1;            // s_q
  int num_heads = 1;              // h_q
  std::vector<int> seqlens = {};  // [batch]
  int block_size = 64;
  float softmax_scale = 0.0417f;  // 1 / sqrt(576): scores of unit-variance data near unit size
  attention::Masking masking = attention::Masking::causal;
  std::uint64_t seed = 1;
};

inline std::string describe(const MlaCase& c) {
  std::ostringstream text;
  text << "batch " << c.batch << " s_q " << c.num_queries << " h_q " << c.num_heads
       << " block_size " << c.block_size << " scale " << c.softmax_scale << " masking "
       << (c.masking == attention::Masking::causal ? "causal" : "none") << " seqlens";
  for (const int length : c.seqlens) text << ' ' << length;
  return text.str();
}

/// A batch's inputs and outputs: a cache with more blocks than needed, each request's blocks
/// drawn from a shuffled pool, unused block-table columns holding -1 (never read).
struct MlaProblem {
  MlaCase c;
  int max_blocks_per_seq = 0;
  std::vector<bf16> q;                    // [batch][s_q][h_q][576]
  std::vector<bf16> kv_cache;             // [num_blocks][block_size][576]
  std::vector<std::int32_t> block_table;  // [batch][max_blocks_per_seq]
  std::vector<std::int32_t> seqlens;      // [batch]
  std::vector<bf16> o;                    // [batch][s_q][h_q][512]
  std::vector<float> lse;                 // [batch][h_q][s_q]

  attention::MlaDecodeShape shape() const {
    return {.batch = c.batch, .num_queries = c.num_queries, .num_heads = c.num_heads};
  }
  attention::MlaDecodeArgs args() {
    return {.shape = shape(),
            .q = q,
            .kv_cache = kv_cache,
            .block_size = c.block_size,
            .block_table = block_table,
            .max_blocks_per_seq = max_blocks_per_seq,
            .cache_seqlens = seqlens,
            .softmax_scale = c.softmax_scale,
            .masking = c.masking,
            .o = o,
            .lse = lse};
  }
};

inline MlaProblem make_problem(const MlaCase& c) {
  MlaProblem problem;
  problem.c = c;
  std::mt19937_64 random(c.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto fill = [&](std::vector<bf16>& values, std::size_t count) {
    values.resize(count);
    for (bf16& value : values) value = bf16::from_float(normal(random));
  };
  int max_blocks = 1, used_blocks = 0;
  for (const int length : c.seqlens) {
    const int blocks = (length + c.block_size - 1) / c.block_size;
    max_blocks = std::max(max_blocks, blocks + 1);  // a spare column, never read
    used_blocks += blocks;
  }
  problem.max_blocks_per_seq = max_blocks;
  const int num_blocks = used_blocks + 3;  // blocks no request uses
  std::vector<std::int32_t> pool(static_cast<std::size_t>(num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), random);
  problem.block_table.assign(static_cast<std::size_t>(c.batch) * max_blocks, -1);
  std::size_t next = 0;
  for (int b = 0; b < c.batch; ++b) {
    const int blocks = (c.seqlens[static_cast<std::size_t>(b)] + c.block_size - 1) / c.block_size;
    for (int k = 0; k < blocks; ++k)
      problem.block_table[static_cast<std::size_t>(b) * max_blocks + k] = pool[next++];
  }
  problem.seqlens.assign(c.seqlens.begin(), c.seqlens.end());
  const std::size_t rows = static_cast<std::size_t>(c.batch) * c.num_queries * c.num_heads;
  fill(problem.q, rows * attention::kKvDim);
  fill(problem.kv_cache, static_cast<std::size_t>(num_blocks) * c.block_size * attention::kKvDim);
  problem.o.assign(rows * attention::kLatentDim, bf16::from_float(12345.0f));  // stale
  problem.lse.assign(rows, 12345.0f);
  return problem;
}

/// Empty if `problem`'s outputs are within the documented tolerance of `expected`, else the
/// first coordinate that is not:
///   |o - o_ref| <= 2^-8 (|o_ref| + sum_j softmax_j |v_j|),  |lse - lse_ref| <= 2^-10,
/// and exactly o = 0, lse = -inf for a row that sees no key.
inline std::string check_against_reference(const MlaProblem& problem,
                                           const reference::MlaDecodeResult& expected) {
  const MlaCase& c = problem.c;
  std::ostringstream text;
  for (int b = 0; b < c.batch; ++b)
    for (int i = 0; i < c.num_queries; ++i)
      for (int h = 0; h < c.num_heads; ++h) {
        const std::size_t row =
            (static_cast<std::size_t>(b) * c.num_queries + static_cast<std::size_t>(i)) *
                c.num_heads +
            static_cast<std::size_t>(h);
        const std::size_t lse_index =
            (static_cast<std::size_t>(b) * c.num_heads + static_cast<std::size_t>(h)) *
                c.num_queries +
            static_cast<std::size_t>(i);
        const float lse = problem.lse[lse_index], lse_ref = expected.lse[lse_index];
        const bool lse_ok =
            std::isinf(lse_ref) ? lse == lse_ref : std::abs(lse - lse_ref) <= 0x1p-10f;
        if (!lse_ok) {
          text << "lse[" << b << "][" << h << "][" << i << "] = " << lse << ", reference "
               << lse_ref;
          return text.str();
        }
        for (int d = 0; d < attention::kLatentDim; ++d) {
          const std::size_t at = row * attention::kLatentDim + static_cast<std::size_t>(d);
          const float o = problem.o[at].to_float(), o_ref = expected.o[at];
          const float tolerance = 0x1p-8f * (std::abs(o_ref) + expected.weighted_abs_v[at]);
          if (!(std::abs(o - o_ref) <= tolerance)) {
            text << "o[" << b << "][" << i << "][" << h << "][" << d << "] = " << o
                 << ", reference " << o_ref << " (tolerance " << tolerance << ")";
            return text.str();
          }
        }
      }
  return "";
}

/// Empty if two outputs are the same bits, else the first difference.
inline std::string check_same_bits(const MlaProblem& a, const MlaProblem& b) {
  std::ostringstream text;
  for (std::size_t at = 0; at < a.o.size(); ++at)
    if (a.o[at].bits != b.o[at].bits) {
      text << "o element " << at << " (row " << at / attention::kLatentDim << ", column "
           << at % attention::kLatentDim << "): " << a.o[at].to_float() << " vs "
           << b.o[at].to_float();
      return text.str();
    }
  for (std::size_t at = 0; at < a.lse.size(); ++at)
    if (std::bit_cast<std::uint32_t>(a.lse[at]) != std::bit_cast<std::uint32_t>(b.lse[at])) {
      text << "lse element " << at << ": " << a.lse[at] << " vs " << b.lse[at];
      return text.str();
    }
  return "";
}

/// The tiers of the bf16 micro-kernels this CPU runs; a MESSAGE for each it does not.
inline std::vector<cpu::Isa> runnable_tiers() {
  std::vector<cpu::Isa> tiers;
  for (const cpu::Isa isa : cpu::kAllIsas) {
    const cpu::Requirement needed =
        cpu::requirement(isa, cpu::KernelFamily::bf16_matmul, cpu::features());
    if (needed.met)
      tiers.push_back(isa);
    else {
      const std::string skipped = std::string("skipping the ") + cpu::to_string(isa) +
                                  " tier: it needs " + needed.needs + "; this CPU has " +
                                  cpu::describe(cpu::features());
      MESSAGE(skipped);
    }
  }
  return tiers;
}

}  // namespace cmx::test
