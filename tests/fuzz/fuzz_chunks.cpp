// libFuzzer target for the chunking protocol.
//  1. The input as lines: each decoded and fed to one ChunkAccumulator with tiny limits; the
//     bounds must hold after every line, and expiry/snapshot must never fail.
//  2. The input (after its first byte) split at a size derived from the first byte: every
//     piece fits, the payloads concatenate to the input (invalid UTF-8 replaced), and when the
//     input is a JSON object the accumulator gives it back whatever the arrival order.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/src/json_text.h"
#include "dispatcherd/chunking.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"

using namespace dispatcherd;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void feed_lines(std::string_view input) {
  const ChunkAccumulator::Limits limits{.timeout_seconds = 4,
                                        .max_messages = 3,
                                        .max_bytes = 2048,
                                        .max_message_bytes = 1024,
                                        .max_total = 16};
  ChunkAccumulator acc(limits);
  double now = 0;
  std::size_t start = 0;
  while (start <= input.size()) {
    std::size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    Result<json> obj = decode_payload(input.substr(start, end - start));
    start = end + 1;
    now += 1;
    if (!obj) continue;
    const auto r = acc.ingest(*obj, now);
    if (r.outcome == ChunkAccumulator::Outcome::Complete) check(r.message.is_object());
    if (r.outcome == ChunkAccumulator::Outcome::NotChunk) check(!is_chunk(*obj));
    check(acc.active_messages() <= limits.max_messages);
    check(acc.held_bytes() <= limits.max_bytes);
    if (static_cast<long>(now) % 3 == 0) (void)acc.expire(now);
  }
  const json snap = acc.snapshot(now);
  check(snap["status"]["active_messages"] == acc.active_messages());
  check(snap["partials"].size() == acc.active_messages());
  (void)dump_compact(snap);
  const auto& s = acc.stats();
  check(s.successful_assemblies + s.errored_assemblies <= s.total_chunks_received);
}

void split_and_join(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  const std::size_t max_bytes = 96 + std::size_t{data[0]} * 4;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto pieces = split_message(text, max_bytes);
  if (!pieces) return;  // max_bytes too small for this message's envelope: a refusal is fine
  if (text.size() <= max_bytes) {
    check(pieces->size() == 1 && (*pieces)[0] == text);
    return;
  }
  std::string joined;
  std::vector<json> envelopes;
  envelopes.reserve(pieces->size());
  for (std::size_t i = 0; i < pieces->size(); ++i) {
    const std::string& p = (*pieces)[i];
    check(p.size() <= max_bytes);
    Result<json> env = parse_json(p);
    check(env.ok() && is_chunk(*env));
    check((*env)["index"] == i && (*env)["total"] == pieces->size());
    joined += (*env)["payload"].get<std::string>();
    envelopes.push_back(std::move(env).value());
  }
  check(joined == text::sanitize_utf8(text));

  // Reverse order: the worst case for the accumulator's bookkeeping.
  ChunkAccumulator acc;
  ChunkAccumulator::Ingested last;
  for (auto it = envelopes.rbegin(); it != envelopes.rend(); ++it) last = acc.ingest(*it, 0);
  Result<json> parsed = parse_json(joined);
  if (parsed && parsed->is_object()) {
    check(last.outcome == ChunkAccumulator::Outcome::Complete);
    check(last.message == *parsed);
  } else {
    check(last.outcome == ChunkAccumulator::Outcome::Error);
  }
  check(acc.active_messages() == 0 && acc.held_bytes() == 0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level(log::Level::Critical);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  feed_lines(std::string_view(reinterpret_cast<const char*>(data), size));
  split_and_join(data, size);
  return 0;
}
