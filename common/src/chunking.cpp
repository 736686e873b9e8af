#include "dispatcherd/chunking.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "dispatcherd/log.h"
#include "dispatcherd/message.h"
#include "json_text.h"

namespace dispatcherd {

namespace {

using json = nlohmann::json;

constexpr const char* kMarker = "__dispatcherd_chunk__";
constexpr const char* kVersion = "v1";
// Bookkeeping charged against Limits::max_bytes besides the payload bytes (map nodes, string
// headers), so that chunks with empty payloads cannot grow memory unbounded.
constexpr std::size_t kPieceCharge = 64;
constexpr std::size_t kMessageCharge = 128;
// Upstream ids are 32 hex chars; a longer one is only ever an attack on memory or logs.
constexpr std::size_t kMaxMessageIdBytes = 256;

std::string envelope(std::string_view message_id, std::size_t index, std::size_t total,
                     std::string_view payload) {
  std::string out;
  out.reserve(96 + payload.size() + payload.size() / 4);
  out += "{\"__dispatcherd_chunk__\":\"v1\",\"message_id\":\"";
  text::append_escaped(out, message_id);
  out += "\",\"index\":";
  out += std::to_string(index);
  out += ",\"total\":";
  out += std::to_string(total);
  out += ",\"payload\":\"";
  text::append_escaped(out, payload);
  out += "\"}";
  return out;
}

// A message id as it may appear in a log line: a hostile one must not forge lines (newlines)
// or break the log's encoding. Upstream's 32-hex ids come out unchanged.
std::string printable(std::string_view id) {
  std::string out;
  text::append_escaped(out, id);
  return out;
}

// A short rendering of a value for log lines; the value may be huge or hostile.
std::string brief(const json& v) {
  std::string s = dump_compact(v);
  if (s.size() > 80) {
    s.resize(80);
    s += "...";
  }
  return s;
}

// Reads an integer field; false for absent, non-integer (bools and 1.0 included) or a value
// that does not fit in int64.
bool read_int(const json& obj, const char* key, std::int64_t& out) {
  const auto it = obj.find(key);
  if (it == obj.end()) return false;
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    out = static_cast<std::int64_t>(u);
    return true;
  }
  if (!it->is_number_integer()) return false;
  out = it->get<std::int64_t>();
  return true;
}

}  // namespace

std::size_t chunk_overhead_bytes(std::string_view message_id, std::size_t index,
                                 std::size_t total) {
  return envelope(message_id, index, total, "").size();
}

Result<std::vector<std::string>> split_message(std::string_view message, std::size_t max_bytes,
                                               std::string message_id) {
  if (message.size() <= max_bytes) return std::vector<std::string>{std::string(message)};
  if (message_id.empty()) message_id = uuid4_hex();

  // Worst case for the digits: there can never be more pieces than bytes.
  const std::size_t overhead = chunk_overhead_bytes(message_id, message.size(), message.size());
  if (max_bytes <= overhead) return Error{"max_bytes too small to contain chunk metadata"};
  const std::size_t budget = max_bytes - overhead;
  if (budget < 12) return Error{"max_bytes too small to encode payload characters"};

  std::vector<std::pair<std::size_t, std::size_t>> slices;  // [begin, end) byte offsets
  std::size_t start = 0;
  std::size_t cost = 0;
  for (std::size_t i = 0; i < message.size();) {
    const text::CodePoint c = text::decode_utf8(message, i);
    const std::size_t k = text::escape_cost(c);
    if (cost + k > budget) {
      slices.emplace_back(start, i);
      start = i;
      cost = 0;
    }
    cost += k;
    i += c.len;
  }
  slices.emplace_back(start, message.size());

  std::vector<std::string> out;
  out.reserve(slices.size());
  for (std::size_t idx = 0; idx < slices.size(); ++idx) {
    const auto [b, e] = slices[idx];
    out.push_back(envelope(message_id, idx, slices.size(), message.substr(b, e - b)));
    if (out.back().size() > max_bytes) {  // cannot happen if escape_cost matches the writer
      return Error{"chunk of " + std::to_string(out.back().size()) +
                   " bytes exceeds the configured max bytes limit " + std::to_string(max_bytes)};
    }
  }
  return out;
}

void ChunkAccumulator::erase(PartialMap::iterator it) {
  for (const auto& [idx, piece] : it->second.pieces) held_bytes_ -= piece.size() + kPieceCharge;
  held_bytes_ -= kMessageCharge + it->first.size();
  order_.erase(it->second.seq);
  partials_.erase(it);
}

void ChunkAccumulator::drop_oldest() {
  if (order_.empty()) return;
  const auto it = partials_.find(order_.begin()->second);
  LOG_WARNING("Dropping partial chunked message message_id="
              << printable(it->first) << " received_chunks=" << it->second.pieces.size() << "/"
              << it->second.total << ": chunk buffer limits reached");
  ++stats_.overflow_drops;
  erase(it);
}

ChunkAccumulator::Ingested ChunkAccumulator::fail(std::string error) {
  ++stats_.errored_assemblies;
  LOG_ERROR(error);
  return Ingested{Outcome::Error, nullptr, std::move(error)};
}

ChunkAccumulator::Ingested ChunkAccumulator::overflow(PartialMap::iterator it, std::string why) {
  ++stats_.overflow_drops;
  LOG_WARNING(why);
  if (it != partials_.end()) erase(it);
  return Ingested{Outcome::Error, nullptr, std::move(why)};
}

ChunkAccumulator::Ingested ChunkAccumulator::ingest(const json& obj, double now) {
  if (!is_chunk(obj)) return {};
  ++stats_.total_chunks_received;

  const json& marker = *obj.find(kMarker);
  if (!marker.is_string() || marker.get_ref<const std::string&>() != kVersion) {
    return fail("Unsupported chunk version: " + brief(marker));
  }
  const auto id_it = obj.find("message_id");
  const auto payload_it = obj.find("payload");
  std::int64_t index = 0;
  std::int64_t total = 0;
  if (id_it == obj.end() || !id_it->is_string() || !read_int(obj, "index", index) ||
      !read_int(obj, "total", total) || (payload_it != obj.end() && !payload_it->is_string())) {
    return fail("Received chunk with invalid metadata: " + brief(obj));
  }
  const std::string& id = id_it->get_ref<const std::string&>();
  static const std::string kEmpty;
  const std::string& payload =
      payload_it == obj.end() ? kEmpty : payload_it->get_ref<const std::string&>();
  if (id.size() > kMaxMessageIdBytes) {
    return fail("Received chunk with a message_id of " + std::to_string(id.size()) + " bytes");
  }
  if (total < 1 || total > limits_.max_total) {
    return fail("Received chunk with total=" + std::to_string(total) +
                " out of range message_id=" + printable(id));
  }
  if (index < 0 || index >= total) {
    return fail("Received chunk with index=" + std::to_string(index) + " outside 0.." +
                std::to_string(total - 1) + " message_id=" + printable(id));
  }

  auto it = partials_.find(id);
  if (payload.size() > limits_.max_message_bytes) {
    return overflow(it, "Dropping chunked message message_id=" + printable(id) +
                            ": one chunk exceeds the message size limit");
  }
  if (it == partials_.end()) {
    while (!partials_.empty() && partials_.size() >= limits_.max_messages) drop_oldest();
    if (limits_.max_messages == 0) {
      return overflow(it, "Dropping chunk message_id=" + printable(id) + ": max_messages is 0");
    }
    it = partials_.emplace(id, Partial{}).first;
    it->second.started = now;
    it->second.total = total;
    it->second.seq = next_seq_++;
    order_.emplace(it->second.seq, id);
    held_bytes_ += kMessageCharge + id.size();
  } else if (it->second.total != total) {
    LOG_WARNING("Chunk total mismatch for message_id=" << printable(id) << " existing="
                                                       << it->second.total << " new=" << total);
    // Pieces beyond the new total can never be used; release them now.
    Partial& p = it->second;
    for (auto pit = p.pieces.lower_bound(total); pit != p.pieces.end();) {
      held_bytes_ -= pit->second.size() + kPieceCharge;
      p.bytes -= pit->second.size();
      pit = p.pieces.erase(pit);
    }
    p.total = total;
  }

  Partial& p = it->second;
  const auto old = p.pieces.find(index);
  const std::size_t old_bytes = old == p.pieces.end() ? 0 : old->second.size();
  const std::size_t old_charge = old == p.pieces.end() ? 0 : old_bytes + kPieceCharge;
  const std::size_t new_charge = payload.size() + kPieceCharge;
  if (p.bytes - old_bytes + payload.size() > limits_.max_message_bytes) {
    return overflow(it, "Dropping chunked message message_id=" + printable(id) +
                            ": it exceeds the message size limit");
  }
  // Make room by dropping other partials, oldest first; this message itself goes last.
  while (held_bytes_ - old_charge + new_charge > limits_.max_bytes) {
    auto oldest = order_.begin();
    if (oldest != order_.end() && oldest->first == p.seq) ++oldest;
    if (oldest == order_.end()) {
      return overflow(it, "Dropping chunked message message_id=" + printable(id) +
                              ": it exceeds the chunk buffer byte limit");
    }
    const auto victim = partials_.find(oldest->second);
    LOG_WARNING("Dropping partial chunked message message_id=" << printable(victim->first)
                                                               << ": chunk buffer bytes full");
    ++stats_.overflow_drops;
    erase(victim);
  }
  held_bytes_ = held_bytes_ - old_charge + new_charge;
  p.bytes = p.bytes - old_bytes + payload.size();
  p.pieces[index] = payload;

  if (static_cast<std::int64_t>(p.pieces.size()) < p.total) {
    LOG_DEBUG("Received chunk " << p.pieces.size() << "/" << p.total << " for message_id="
                                << printable(id) << ", waiting for remainder");
    return Ingested{Outcome::Incomplete, nullptr, {}};
  }

  // Every index 0..total-1 is present: only in-range pieces are ever stored.
  std::string text;
  text.reserve(p.bytes);
  for (const auto& [idx, piece] : p.pieces) text += piece;
  erase(it);  // `id` lives in `obj`, not in the erased partial
  Result<json> parsed = parse_json(text);
  if (!parsed) {
    return fail("Failed to decode chunked message message_id=" + printable(id) + ": " +
                parsed.error().message);
  }
  if (!parsed->is_object()) {
    return fail("Failed to decode chunked message message_id=" + printable(id) +
                ": Reassembled chunked message is not a dict, type=" + parsed->type_name());
  }
  ++stats_.successful_assemblies;
  return Ingested{Outcome::Complete, std::move(parsed).value(), {}};
}

std::vector<std::string> ChunkAccumulator::expire(double now) {
  std::vector<std::string> expired;
  if (limits_.timeout_seconds <= 0) return expired;
  for (auto it = partials_.begin(); it != partials_.end();) {
    const double age = now - it->second.started;
    if (age < limits_.timeout_seconds) {
      ++it;
      continue;
    }
    std::string indexes;
    for (const auto& [idx, piece] : it->second.pieces) {
      if (!indexes.empty()) indexes += ", ";
      indexes += std::to_string(idx);
    }
    LOG_ERROR("Chunked message expired message_id="
              << printable(it->first) << " age=" << age << "s timeout=" << limits_.timeout_seconds
              << "s received_chunks=[" << indexes << "] expected_total=" << it->second.total);
    ++stats_.timed_out_assemblies;
    expired.push_back(it->first);
    auto next = std::next(it);
    erase(it);
    it = next;
  }
  return expired;
}

json ChunkAccumulator::snapshot(double now) const {
  json partials = json::object();
  for (const auto& [id, p] : partials_) {
    json chunks = json::array();
    for (const auto& [idx, piece] : p.pieces) {
      chunks.push_back({{"chunk_id", idx}, {"length", text::code_points(piece)}});
    }
    partials[id] = {{"seconds_since_start", now - p.started},
                    {"expected_total", p.total},
                    {"chunks", std::move(chunks)}};
  }
  return {{"status",
           {{"total_chunks_received", stats_.total_chunks_received},
            {"successful_assemblies", stats_.successful_assemblies},
            {"errored_assemblies", stats_.errored_assemblies},
            {"timed_out_assemblies", stats_.timed_out_assemblies},
            {"active_messages", partials_.size()}}},
          {"partials", std::move(partials)}};
}

}  // namespace dispatcherd
