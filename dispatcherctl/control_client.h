#pragma once
// One control-and-reply round trip (upstream-spec §4.2 steps 2-7) over pg_notify or the
// Unix socket. Both return the replies that arrived in time, possibly fewer than expected;
// an error means nothing could be asked (no connection, bad channel, ...).

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dispatcherd/config.h"
#include "dispatcherd/result.h"
#include "options.h"

namespace dispatcherctl {

/// How long and for how many replies to wait.
struct WaitPolicy {
  int expected_replies = 1;  ///< stop early once this many arrived; 0 = wait the timeout out
  double timeout = 1.0;      ///< total seconds, counted from right after the request is sent
};

/// LISTEN on a fresh "reply_to_<uuid>" channel, publish the request (chunked above 7999
/// bytes) to the configured request channel (choose_channel), collect replies.
dispatcherd::Result<std::vector<nlohmann::json>> control_over_pg(
    const dispatcherd::PgNotifyConfig& pg, const ControlSpec& spec, WaitPolicy wait);

/// Connect to `socket_path`, send the request as lines (chunked above 1024 bytes), read
/// reply lines on the same connection.
dispatcherd::Result<std::vector<nlohmann::json>> control_over_socket(const std::string& socket_path,
                                                                     const ControlSpec& spec,
                                                                     WaitPolicy wait);

}  // namespace dispatcherctl
