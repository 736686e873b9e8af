#pragma once
// `dispatcherctl submit`: build task messages like upstream's publisher (upstream-spec §11.1)
// and publish them over pg_notify (§11.2), many per statement.

#include <cstddef>
#include <iosfwd>
#include <string>
#include <vector>

#include "dispatcherd/result.h"
#include "options.h"

namespace dispatcherctl {

/// The JSON text of the task messages `o` asks for, in upstream's key order: task, time_pub,
/// uuid, args and kwargs only when given and non-empty, timeout only when > 0, then delay and
/// on_duplicate when given. uuid: o.uuid with count 1; "<uuid>-<i>" for i in 0..count-1
/// with a count; a fresh uuid4 each when o.uuid is empty.
std::vector<std::string> build_task_messages(const SubmitOptions& o, double time_pub);

/// One SQL statement's worth of payloads.
struct PublishStatement {
  bool batched = false;  ///< true: `SELECT pg_notify($1, x) FROM unnest(...)`; else one
                         ///< `SELECT pg_notify($1, $2)` with payloads[0]
  std::vector<std::string> payloads;
};

/// Groups messages into statements: up to `batch` unchunked messages per batched statement;
/// a message above `max_bytes` is split into chunks, one statement each (its pieces must not
/// share a transaction with other messages' pieces for no reason, and stay in order).
/// Fails only when a message cannot be split.
dispatcherd::Result<std::vector<PublishStatement>> plan_statements(
    const std::vector<std::string>& messages, std::size_t max_bytes, std::size_t batch = 100);

/// Runs `submit`: load the config, choose broker and channel, publish; writes
/// "submitted N task(s) to CHANNEL" or "dispatcherctl: <error>" to `err`. Returns the exit
/// code (0 or 1).
int run_submit(const Invocation& inv, std::ostream& err);

}  // namespace dispatcherctl
