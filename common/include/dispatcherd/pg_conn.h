#pragma once
// A blocking libpq session for clients (the Publisher, dispatcherctl): how they connect, who
// owns the connection, and how libpq's messages are put on one line. The service itself uses
// the non-blocking broker in dispatcherd/brokers/.

#include <memory>
#include <string>

#include "dispatcherd/result.h"

struct pg_conn;

namespace dispatcherd {

/// Owns one libpq connection (PQfinish on destruction); move-only. Server notices go to our
/// log instead of raw to stderr.
class PgConn {
 public:
  /// Connects (blocking) with `conninfo`; client_encoding is forced to UTF8 (payloads are
  /// UTF-8 JSON and NOTIFY's 7999-byte limit counts server-encoding bytes) and
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
std::string pg_one_line(const char* message);

}  // namespace dispatcherd
