#pragma once
// Internal to dispatcherd_common: the blocking libpq session under Publisher, and the
// pipeline that sends many `SELECT pg_notify($1, $2)` in one round trip.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/result.h"

struct pg_conn;

namespace dispatcherd::publish_detail {

/// Owns one libpq connection (PQfinish on destruction); move-only.
class PgConn {
 public:
  /// Connects (blocking) with `conninfo`; client_encoding is forced to UTF8 and
  /// connect_timeout defaults to `connect_timeout_seconds` unless the conninfo sets it.
  /// Error: "cannot connect to Postgres: <libpq's message on one line>".
  static Result<PgConn> open(const std::string& conninfo, int connect_timeout_seconds);

  PgConn() = default;
  /// The raw connection, still owned here; null when none.
  pg_conn* get() const { return conn_.get(); }
  /// True when a connection is held and libpq last saw it healthy.
  bool healthy() const;
  /// libpq's current error message, on one line.
  std::string last_error() const;

 private:
  struct Finish {
    void operator()(pg_conn* c) const;
  };
  std::unique_ptr<pg_conn, Finish> conn_;
};

/// Joins libpq's multi-line messages ("...\n", hints, one line per host tried) with "; ".
std::string one_line(const char* message);

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
