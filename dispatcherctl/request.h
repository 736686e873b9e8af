#pragma once
// The pure decisions of a control-and-reply round trip (upstream-spec §4.1-§4.2, §3.1.3):
// which broker, which request channel, the request text, and the collection of replies.
// No I/O here, so all of it is unit-tested.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/chunking.h"
#include "dispatcherd/config.h"
#include "dispatcherd/result.h"

namespace dispatcherctl {

/// The transports dispatcherctl can talk over.
enum class BrokerKind { PgNotify, Socket };

/// §4.2 step 1: publish.default_control_broker, else the only configured broker, else
/// publish.default_broker, else an error naming the options. A named broker that is not
/// configured is an error too.
dispatcherd::Result<BrokerKind> choose_control_broker(const dispatcherd::Config& config);

/// §6.2 publisher rule (for `submit`): the only configured broker, else
/// publish.default_broker; it must be pg_notify (the only broker `submit` speaks).
dispatcherd::Result<BrokerKind> choose_publish_broker(const dispatcherd::Config& config);

/// §3.1.3 against the *configured* channels: `explicit_channel` if not empty, else
/// default_publish_channel, else the only entry of `channels`, else an error. Unlike
/// upstream's client (quirk #8) the reply channel never takes part, so a request is never
/// sent to our own reply channel. The result is validated (1..63 bytes).
dispatcherd::Result<std::string> choose_channel(const dispatcherd::PgNotifyConfig& pg,
                                                std::string_view explicit_channel = {});

/// "reply_to_" + uuid4 with underscores (45 characters).
std::string new_reply_channel();

/// The request text: {"control": ..., "reply_to": ..., "control_data": ...} in that key order,
/// serialized like Python's json.dumps; control_data is left out when empty (§4.1).
std::string build_control_request(std::string_view command, std::string_view reply_to,
                                  const nlohmann::json& control_data);

/// Turns received payloads into replies (§4.2 step 6). Time is passed in; no clock, no I/O.
class ReplyCollector {
 public:
  /// Feeds one payload received at `now` (seconds, any monotonic clock): a JSON object is a
  /// reply; invalid JSON or a non-object becomes {"error": "JSON parse error", "original":
  /// payload} (still a reply); a chunk is stored, and only a completed message is a reply.
  /// Returns true when a reply was added.
  bool add(std::string_view payload, double now);

  /// The replies so far, in arrival order.
  const std::vector<nlohmann::json>& replies() const { return replies_; }
  /// True when `expected` > 0 replies have arrived (0 means "wait for the timeout").
  bool satisfied(int expected) const {
    return expected > 0 && replies_.size() >= static_cast<std::size_t>(expected);
  }
  /// Chunks that were dropped as malformed or whose message did not parse.
  std::uint64_t chunk_errors() const { return chunks_.stats().errored_assemblies; }

 private:
  std::vector<nlohmann::json> replies_;
  // Looser bounds than the service's: these are answers this process asked for, and a
  // `running` listing of a 100k-task queue is ~30 MB (the service's 16 MB bound refused it).
  dispatcherd::ChunkAccumulator chunks_{
      dispatcherd::ChunkAccumulator::Limits{.timeout_seconds = 1800,
                                            .max_messages = 1000,
                                            .max_bytes = std::size_t{1} << 30,
                                            .max_message_bytes = std::size_t{1} << 30,
                                            .max_total = 1000000}};
};

}  // namespace dispatcherctl
