#pragma once
// Internal to dispatcherd_common: the blocking libpq session under Publisher, and the
// pipeline that sends many `SELECT pg_notify($1, $2)` in one round trip.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/pg_conn.h"
#include "dispatcherd/result.h"

namespace dispatcherd::publish_detail {

/// One `pg_notify(channel, payload)`. Both views must cover a whole std::string (libpq reads
/// NUL-terminated values) that outlives run_pipeline().
struct Notification {
  std::string_view channel;
  std::string_view payload;
};

/// Notifications that commit together: one implicit transaction, ended by a pipeline Sync.
using Segment = std::vector<Notification>;

/// What run_pipeline() did.
struct PipelineOutcome {
  /// One per segment: "" when it committed, else the first error of that segment (Postgres
  /// rolled the rest of the segment back).
  std::vector<std::string> errors;
  /// True when the session is unusable (lost, timed out, out of step): drop it.
  bool broken = false;
};

/// Sends every segment over `conn` in pipeline mode, reading results while sending so neither
/// side's buffers can fill up and stall, with at most ~`max_in_flight` statements unanswered
/// (bounds libpq's buffers). When the session fails, every unresolved segment gets the reason
/// ("connection lost: ...") — a segment whose Sync was already sent may still have committed
/// — and `broken` is set. `io_timeout_seconds` > 0 bounds a wait without progress that way.
PipelineOutcome run_pipeline(PgConn& conn, const std::vector<Segment>& segments,
                             double io_timeout_seconds, std::size_t max_in_flight = 1000);

}  // namespace dispatcherd::publish_detail
