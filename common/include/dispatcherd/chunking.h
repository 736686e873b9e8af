#pragma once
// The chunking protocol (upstream-spec §2.4): messages above a transport's limit travel as
// several v1 envelopes and are reassembled on arrival. Both directions use it: tasks, control
// requests and replies.

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/result.h"

namespace dispatcherd {

/// Largest payload Postgres accepts in NOTIFY (it rejects 8000 bytes and more).
constexpr std::size_t kPgNotifyMaxBytes = 7999;
/// Chunk size the socket broker uses for replies (§3.2).
constexpr std::size_t kSocketMaxBytes = 1024;

/// Splits `message` (UTF-8 JSON text) into v1 chunk envelopes of at most `max_bytes` each,
/// never cutting a UTF-8 character; a message of at most `max_bytes` comes back unchanged as
/// the only element. `message_id` (32 hex chars) is generated when empty. Fails when
/// `max_bytes` cannot hold the envelope ("max_bytes too small to contain chunk metadata") or
/// leaves fewer than 12 bytes per piece ("max_bytes too small to encode payload characters").
/// Invalid UTF-8 is not refused: each invalid byte is budgeted as one character and sent as
/// \ufffd, so such a message reassembles with U+FFFD in place of the bad bytes.
Result<std::vector<std::string>> split_message(std::string_view message, std::size_t max_bytes,
                                               std::string message_id = {});

/// Bytes of a v1 envelope with an empty payload: the per-piece overhead split_message budgets
/// for (it passes the message's byte length as both `index` and `total`, the worst case).
std::size_t chunk_overhead_bytes(std::string_view message_id, std::size_t index, std::size_t total);

/// Reassembles chunked messages. Bounded: a flood of bogus chunks cannot exhaust memory.
/// Time is passed in (seconds on any monotonic clock); it owns no fd and reads no clock.
class ChunkAccumulator {
 public:
  /// Bounds and expiry.
  struct Limits {
    double timeout_seconds = 1800;              ///< ≤ 0 disables expiry
    std::size_t max_messages = 1000;            ///< partial messages held at once
    std::size_t max_bytes = 64u << 20;          ///< payload bytes held over all partials
    std::size_t max_message_bytes = 16u << 20;  ///< bytes of one assembled message
    std::int64_t max_total = 100000;            ///< largest `total` accepted in a chunk
  };

  /// What ingest() made of one object.
  enum class Outcome {
    NotChunk,    ///< not a chunk: use the object as it is
    Incomplete,  ///< stored; nothing to do yet
    Complete,    ///< `message` holds the reassembled object
    Error,       ///< dropped; `error` says why (already counted and logged)
  };
  /// `message` is null except for Complete (NotChunk does not copy the input).
  struct Ingested {
    Outcome outcome = Outcome::NotChunk;
    nlohmann::json message;
    std::string error;
  };

  /// Counters as the `chunks` control command reports them, plus our overflow counter.
  struct Stats {
    std::uint64_t total_chunks_received = 0;
    std::uint64_t successful_assemblies = 0;
    std::uint64_t errored_assemblies = 0;
    std::uint64_t timed_out_assemblies = 0;
    std::uint64_t overflow_drops = 0;  ///< partials dropped because a bound was reached
  };

  ChunkAccumulator() = default;
  explicit ChunkAccumulator(Limits limits) : limits_(limits) {}

  /// Feeds one decoded object received at time `now`. Malformed chunks (§2.4) count as
  /// errored_assemblies; so do an `index` outside 0..total-1 and a `total` outside
  /// 1..max_total (upstream would store them uselessly). A chunk that breaks a bound drops a
  /// whole partial message (the oldest one, or its own) and counts in overflow_drops.
  Ingested ingest(const nlohmann::json& obj, double now);

  /// Drops partial messages older than the timeout; returns their ids (for the log).
  std::vector<std::string> expire(double now);

  /// Counters so far.
  const Stats& stats() const { return stats_; }
  /// Partial messages held now.
  std::size_t active_messages() const { return partials_.size(); }
  /// Bytes held now, as compared with Limits::max_bytes: payload bytes plus a fixed charge
  /// per chunk and per message (id included), so floods of empty chunks are bounded too.
  std::size_t held_bytes() const { return held_bytes_; }

  /// The `chunks` command's reply body (§4.4): {"status": {...}, "partials": {...}}.
  nlohmann::json snapshot(double now) const;

 private:
  struct Partial {
    double started = 0;
    std::int64_t total = 0;
    std::map<std::int64_t, std::string> pieces;
    std::size_t bytes = 0;  ///< payload bytes (the assembled size so far)
    std::uint64_t seq = 0;  ///< arrival order of the first chunk, the key in order_
  };
  using PartialMap = std::map<std::string, Partial>;
  void drop_oldest();
  void erase(PartialMap::iterator it);
  Ingested fail(std::string error);
  Ingested overflow(PartialMap::iterator it, std::string why);

  Limits limits_;
  Stats stats_;
  PartialMap partials_;
  std::map<std::uint64_t, std::string> order_;  ///< seq → message id, oldest first
  std::uint64_t next_seq_ = 0;
  std::size_t held_bytes_ = 0;
};

}  // namespace dispatcherd
