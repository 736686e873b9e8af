#pragma once
// `dispatcherctl submit`: build task messages like upstream's publisher (upstream-spec §11.1)
// and publish them over pg_notify (§11.2) with dispatcherd::Publisher, many per round trip.

#include <cstddef>
#include <iosfwd>

#include "dispatcherd/publish.h"
#include "options.h"

namespace dispatcherctl {

/// Messages published per pipelined round trip; bounds the memory a large --count needs.
constexpr std::size_t kSubmitBatchSize = 1000;

/// Message `i` (0-based) of the `o.count` that `o` asks for. uuid: o.uuid with count 1;
/// "<uuid>-<i>" with a count; empty (the Publisher makes a fresh uuid4 each) when o.uuid is
/// empty. args/kwargs/timeout/delay/on_duplicate/queue are copied as given.
dispatcherd::TaskMessage task_message(const SubmitOptions& o, int i);

/// Runs `submit`: load the config, choose broker and channel, publish every message in batches
/// of kSubmitBatchSize, each message its own transaction. Writes "submitted N task(s) to
/// CHANNEL" or "dispatcherctl: <error>" to `err`. Returns the exit code: 0, or 1 when the
/// config, the connection or any message failed (the others are still published).
int run_submit(const Invocation& inv, std::ostream& err);

}  // namespace dispatcherctl
