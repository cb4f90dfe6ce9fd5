// SPDX-License-Identifier: Apache-2.0
// The expert-parallel dispatch and combine a user writes without cmx's fused kernels: separate
// quantize, pack, copy and unpack passes over the same device and memory. cmx_bench's baseline.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "cmx/cmx.hpp"
#include "lazy_array.hpp"

namespace cmx::bench {

/// The 32 bytes after the row of every exchanged record: where the row belongs.
struct RecordTag {
  float scale;                ///< dispatch: the token's INT8 scale; combine: unused (1)
  std::int32_t src_token;     ///< the token's index on its source rank
  std::int32_t topk_slot;     ///< k: which of the token's choices the row answers
  std::int32_t local_expert;  ///< dispatch: the expert on the destination rank; combine: unused
  std::int32_t reserved[4];
};
static_assert(sizeof(RecordTag) == kTileAlignment, "a tag is one 32-byte unit, as puts require");

/// The bytes of one exchanged record: row_bytes of row (a multiple of 32), then one RecordTag.
class RecordFormat {
 public:
  explicit RecordFormat(std::size_t row_bytes)
      : row_bytes_(row_bytes), record_bytes_(row_bytes + sizeof(RecordTag)) {
    cmx::detail::require(row_bytes % kTileAlignment == 0, ErrorCode::invalid_argument,
                         "a record's row_bytes ", row_bytes, " is not a multiple of ",
                         kTileAlignment);
  }

  std::size_t row_bytes() const noexcept { return row_bytes_; }
  std::size_t record_bytes() const noexcept { return record_bytes_; }

  void set_tag(std::byte* record, const RecordTag& tag) const noexcept {
    std::memcpy(record + row_bytes_, &tag, sizeof(tag));
  }
  RecordTag tag(const std::byte* record) const noexcept {
    RecordTag tag;
    std::memcpy(&tag, record + row_bytes_, sizeof(tag));
    return tag;
  }

 private:
  std::size_t row_bytes_;
  std::size_t record_bytes_;
};

/// An all-to-all of fixed-size records through symmetric memory, the way unfused code moves
/// rows: append records to a private send area per destination rank, then exchange(): one put
/// of each area into its destination's staging area, the count beside it, and a barrier.
///
/// A record is row_bytes of row (a multiple of 32) followed by one RecordTag. The symmetric
/// staging part of every rank, in bytes:
///   +---------+-----------------------------------------------------------------------+
///   | counts  | [num_ranks] 32-byte slots: records source rank s sent in the exchange |
///   | records | [num_ranks][capacity] records; region s is written only by rank s      |
///   +---------+-----------------------------------------------------------------------+
///
/// NOTES: a rank reads its staging after the exchange's barrier, and a peer writes it again only
/// in a later exchange of the same object. Callers keep a barrier between the two that every
/// rank passes after its reads: UnfusedEp alternates two exchanges, each one's barrier closing
/// the reads of the other's.
template <Device Dev>
class RecordExchange : public RecordFormat {
 public:
  /// Collective. Each rank sends each rank up to `capacity` records per exchange.
  RecordExchange(Dev device, std::size_t row_bytes, std::size_t capacity)
      : RecordFormat(row_bytes),
        device_(device),
        num_ranks_(static_cast<std::size_t>(device.world_size())),
        capacity_(capacity),
        records_offset_(num_ranks_ * sizeof(CountSlot)),
        staging_(device_.allocate_symmetric(records_offset_ + num_ranks_ * region_bytes())),
        send_area_(num_ranks_ * region_bytes()),  // [num_ranks][capacity] records
        num_appended_(num_ranks_, 0) {}

  /// The next free record for `dst_rank` in the send area: write row_bytes() of row at it, then
  /// set_tag(). Throws cmx::Error(capacity) past `capacity` records.
  std::byte* append(int dst_rank) {
    std::size_t& appended = num_appended_[static_cast<std::size_t>(dst_rank)];
    cmx::detail::require(appended < capacity_, ErrorCode::capacity, "RecordExchange: more than ",
                         capacity_, " records for rank ", dst_rank);
    return send_region(static_cast<std::size_t>(dst_rank)) + appended++ * record_bytes();
  }

  /// Collective: puts every appended record and its count into its destination's staging, then
  /// waits at a barrier. Afterwards received() reads what each rank sent here, and the send
  /// area is empty again.
  void exchange() {
    const std::size_t rank = static_cast<std::size_t>(device_.rank());
    for (std::size_t dst = 0; dst < num_ranks_; ++dst) {
      const std::size_t appended = num_appended_[dst];
      device_.put(staging_, static_cast<int>(dst), region_offset(rank),
                  std::span<const std::byte>(send_region(dst), appended * record_bytes()));
      const CountSlot count{static_cast<std::int64_t>(appended), {}};
      device_.put(staging_, static_cast<int>(dst), count_offset(rank),
                  std::as_bytes(std::span<const CountSlot>(&count, 1)));
      num_appended_[dst] = 0;
    }
    device_.barrier();
  }

  /// Records `src_rank` sent here in the last exchange.
  std::size_t num_received(int src_rank) const noexcept {
    CountSlot count;
    std::memcpy(&count, device_.local(staging_) + count_offset(static_cast<std::size_t>(src_rank)),
                sizeof(count));
    return static_cast<std::size_t>(count.count);
  }
  /// Record `index` of those `src_rank` sent here.
  const std::byte* received(int src_rank, std::size_t index) const noexcept {
    return device_.local(staging_) + region_offset(static_cast<std::size_t>(src_rank)) +
           index * record_bytes();
  }

 private:
  struct CountSlot {
    std::int64_t count;
    std::int64_t reserved[3];
  };
  static_assert(sizeof(CountSlot) == kTileAlignment);

  // Bytes of the records one rank sends one rank per exchange.
  std::size_t region_bytes() const noexcept { return capacity_ * record_bytes(); }
  // Byte offsets in every staging part of the count and the records that `src_rank` sends.
  std::size_t count_offset(std::size_t src_rank) const noexcept {
    return src_rank * sizeof(CountSlot);
  }
  std::size_t region_offset(std::size_t src_rank) const noexcept {
    return records_offset_ + src_rank * region_bytes();
  }
  // Where the records for `dst_rank` wait in the send area.
  std::byte* send_region(std::size_t dst_rank) noexcept {
    return send_area_.data() + dst_rank * region_bytes();
  }

  Dev device_;
  std::size_t num_ranks_;
  std::size_t capacity_;        // records per (source, destination) pair and exchange
  std::size_t records_offset_;  // bytes: where `records` starts in the staging part
  typename Dev::Symmetric staging_;
  LazyArray<std::byte> send_area_;         // [num_ranks][capacity] records, private
  std::vector<std::size_t> num_appended_;  // [num_ranks] records in each destination's area
};

/// Dispatch and combine as separate passes over an all-to-all of records (`Exchange`:
/// RecordExchange, or any type with its members and constructor, such as an MPI_Alltoallv), with
/// cmx's contract (the same received rows in the same layout and order, the same y bit for
/// bit) and none of its fusion:
///   dispatch: quantize all tokens -> pack rows by destination -> copy -> unpack by expert;
///   combine:  pack expert outputs by source -> copy -> unpack to [token][k] -> weighted reduce.
/// Each pass runs on the rank's thread: cmx_bench gives cmx's kernels one block per rank too.
template <Device Dev, class Exchange = RecordExchange<Dev>>
class UnfusedEp {
 public:
  /// Collective, like cmx::ep::Buffer.
  UnfusedEp(Dev device, const ep::Config& config)
      : device_(device),
        config_(config),
        layout_(config, device.world_size()),
        hidden_(static_cast<std::size_t>(config.hidden)),
        codes_(static_cast<std::size_t>(config.max_tokens_per_rank) * hidden_),
        scales_(static_cast<std::size_t>(config.max_tokens_per_rank)),
        dispatch_exchange_(device, round_up(hidden_, kTileAlignment), max_rows_per_peer()),
        combine_exchange_(device, hidden_ * sizeof(bf16), max_rows_per_peer()),
        received_(layout_.num_messages() * dispatch_exchange_.record_bytes()),
        received_counts_(num_segments()),
        received_first_rows_(num_segments()),
        next_rows_(num_segments()),
        combine_rows_(static_cast<std::size_t>(config.max_tokens_per_rank * config.num_topk) *
                      hidden_),
        accumulator_(hidden_) {}

  /// x [num_tokens, hidden] bf16, topk_idx [num_tokens, num_topk]; both must outlive combine().
  void dispatch(std::span<const bf16> x, std::span<const std::int32_t> topk_idx, int num_tokens) {
    const std::size_t num_topk = static_cast<std::size_t>(config_.num_topk);
    topk_idx_ = topk_idx;
    num_tokens_ = static_cast<std::size_t>(num_tokens);

    // 1. Quantize every token once, into codes_ [T][H] int8 and scales_ [T].
    for (std::size_t t = 0; t < num_tokens_; ++t)
      scales_[t] = device_.quantize_row_int8(x.subspan(t * hidden_, hidden_), token_codes(t));

    // 2. Pack: copy the row of every (token, expert) choice into the send area of the rank
    //    that hosts the expert.
    for (std::size_t t = 0; t < num_tokens_; ++t)
      for (std::size_t k = 0; k < num_topk; ++k) {
        const std::int32_t expert = topk_idx[t * num_topk + k];
        if (expert < 0) continue;
        std::byte* record = dispatch_exchange_.append(expert / layout_.num_local_experts);
        std::memcpy(record, token_codes(t).data(), hidden_);
        dispatch_exchange_.set_tag(record, {.scale = scales_[t],
                                            .src_token = static_cast<std::int32_t>(t),
                                            .topk_slot = static_cast<std::int32_t>(k),
                                            .local_expert = expert % layout_.num_local_experts,
                                            .reserved = {}});
      }

    // 3. Copy: the all-to-all.
    dispatch_exchange_.exchange();

    // 4. Unpack: count the records of each (local expert, source rank) segment, place the
    //    segments as cmx's receive area does (cmx::ep::Layout::first_rows), then copy each
    //    record to the next row of its segment: the layout a grouped GEMM reads.
    std::fill(received_counts_.begin(), received_counts_.end(), 0);
    for (int src = 0; src < layout_.num_ranks; ++src)
      for (std::size_t i = 0; i < dispatch_exchange_.num_received(src); ++i)
        ++received_counts_[segment(
            dispatch_exchange_.tag(dispatch_exchange_.received(src, i)).local_expert, src)];
    layout_.first_rows(received_counts_, received_first_rows_);
    std::copy(received_first_rows_.begin(), received_first_rows_.end(), next_rows_.begin());
    for (int src = 0; src < layout_.num_ranks; ++src)
      for (std::size_t i = 0; i < dispatch_exchange_.num_received(src); ++i) {
        const std::byte* record = dispatch_exchange_.received(src, i);
        const int expert = dispatch_exchange_.tag(record).local_expert;
        std::memcpy(
            received_.data() + static_cast<std::size_t>(next_rows_[segment(expert, src)]++) *
                                   dispatch_exchange_.record_bytes(),
            record, dispatch_exchange_.record_bytes());
      }
  }

  /// expert_out [Layout::num_messages(), hidden] bf16 with a row per received row at its row
  /// of the receive area (received_row_index); topk_weights [num_tokens, num_topk];
  /// y [num_tokens, hidden] bf16 out.
  void combine(std::span<const bf16> expert_out, std::span<const float> topk_weights,
               std::span<bf16> y) {
    const std::size_t num_topk = static_cast<std::size_t>(config_.num_topk);

    // 1. Pack: copy the output row of every received row into the send area of its source rank.
    for (int expert = 0; expert < layout_.num_local_experts; ++expert)
      for (int src = 0; src < layout_.num_ranks; ++src)
        for (int slot = 0; slot < received_count(expert, src); ++slot) {
          const RecordTag from = received_tag(expert, src, slot);
          std::byte* record = combine_exchange_.append(src);
          std::memcpy(record, expert_out.data() + received_row_index(expert, src, slot) * hidden_,
                      hidden_ * sizeof(bf16));
          combine_exchange_.set_tag(record, {.scale = 1.0f,
                                             .src_token = from.src_token,
                                             .topk_slot = from.topk_slot,
                                             .local_expert = expert,
                                             .reserved = {}});
        }

    // 2. Copy: the all-to-all.
    combine_exchange_.exchange();

    // 3. Unpack: each returned row to its (token, k) place, combine_rows_ [T][K][H] bf16.
    for (int peer = 0; peer < layout_.num_ranks; ++peer)
      for (std::size_t i = 0; i < combine_exchange_.num_received(peer); ++i) {
        const std::byte* record = combine_exchange_.received(peer, i);
        const RecordTag tag = combine_exchange_.tag(record);
        std::memcpy(combine_row(static_cast<std::size_t>(tag.src_token),
                                static_cast<std::size_t>(tag.topk_slot))
                        .data(),
                    record, hidden_ * sizeof(bf16));
      }

    // 4. Reduce: y[t] = sum over k in order of fma(topk_weights[t, k], row(t, k), acc) in fp32
    //    (the device's accumulate_weighted_rows over the token's unmasked rows, i.e. std::fma),
    //    rounded once to bf16 (cmx::round_row_to_bf16): the same arithmetic as cmx::ep::combine.
    for (std::size_t t = 0; t < num_tokens_; ++t) {
      token_rows_.clear();
      token_weights_.clear();
      for (std::size_t k = 0; k < num_topk; ++k) {
        if (topk_idx_[t * num_topk + k] < 0) continue;
        token_rows_.push_back(combine_row(t, k));
        token_weights_.push_back(topk_weights[t * num_topk + k]);
      }
      std::fill(accumulator_.begin(), accumulator_.end(), 0.0f);
      device_.accumulate_weighted_rows(accumulator_, token_rows_, token_weights_);
      device_.round_row_to_bf16(accumulator_, y.subspan(t * hidden_, hidden_));
    }
  }

  // ---- what the last dispatch delivered, to check it against cmx::ep::Received --------------

  /// Rows that `src_rank` sent to `local_expert`.
  int received_count(int local_expert, int src_rank) const noexcept {
    return received_counts_[segment(local_expert, src_rank)];
  }
  /// The INT8 codes [hidden] of received row `slot` of segment (local_expert, src_rank).
  std::span<const std::int8_t> received_codes(int local_expert, int src_rank, int slot) const {
    return {reinterpret_cast<const std::int8_t*>(received_record(local_expert, src_rank, slot)),
            hidden_};
  }
  /// The row of the receive area that holds received row `slot` of segment
  /// (local_expert, src_rank), as cmx::ep::Received::row_index.
  std::size_t received_row_index(int local_expert, int src_rank, int slot) const noexcept {
    return static_cast<std::size_t>(received_first_rows_[segment(local_expert, src_rank)] + slot);
  }
  /// The tag of the same row: its scale, source token and k.
  RecordTag received_tag(int local_expert, int src_rank, int slot) const {
    return dispatch_exchange_.tag(received_record(local_expert, src_rank, slot));
  }

 private:
  // The most rows one rank can send another in one call: a token reaches a rank once per
  // expert of that rank it chose.
  std::size_t max_rows_per_peer() const noexcept {
    return static_cast<std::size_t>(config_.max_tokens_per_rank) *
           static_cast<std::size_t>(std::min(config_.num_topk, layout_.num_local_experts));
  }

  std::size_t num_segments() const noexcept {
    return static_cast<std::size_t>(layout_.num_local_experts * layout_.num_ranks);
  }
  std::size_t segment(int local_expert, int src_rank) const noexcept {
    return static_cast<std::size_t>(local_expert * layout_.num_ranks + src_rank);
  }
  std::span<std::int8_t> token_codes(std::size_t token) noexcept {
    return {codes_.data() + token * hidden_, hidden_};
  }
  const std::byte* received_record(int local_expert, int src_rank, int slot) const noexcept {
    return received_.data() +
           received_row_index(local_expert, src_rank, slot) * dispatch_exchange_.record_bytes();
  }
  std::span<bf16> combine_row(std::size_t token, std::size_t k) noexcept {
    return {
        combine_rows_.data() + (token * static_cast<std::size_t>(config_.num_topk) + k) * hidden_,
        hidden_};
  }

  Dev device_;
  ep::Config config_;
  ep::Layout layout_;
  std::size_t hidden_;
  std::vector<std::int8_t> codes_;  // [max_tokens][hidden] quantized tokens
  std::vector<float> scales_;       // [max_tokens] their scales
  Exchange dispatch_exchange_;      // records: INT8 row (padded to 32 B) + tag
  Exchange combine_exchange_;       // records: bf16 row + tag
  // [num_messages] dispatch records, laid out like cmx's receive area; only received rows are
  // ever written (LazyArray: only they take memory).
  LazyArray<std::byte> received_;
  std::vector<std::int32_t> received_counts_;      // [num_local_experts][num_ranks]
  std::vector<std::int32_t> received_first_rows_;  // [num_local_experts][num_ranks]
  std::vector<std::int32_t> next_rows_;            // [num_local_experts][num_ranks] unpacking
  std::vector<bf16> combine_rows_;                 // [max_tokens][num_topk][hidden]
  std::vector<float> accumulator_;                 // [hidden] fp32
  // A token's unmasked rows and their weights, in k order (capacity kept between calls).
  std::vector<std::span<const bf16>> token_rows_;
  std::vector<float> token_weights_;
  std::span<const std::int32_t> topk_idx_;  // of the last dispatch, [num_tokens][num_topk]
  std::size_t num_tokens_ = 0;
};

}  // namespace cmx::bench
