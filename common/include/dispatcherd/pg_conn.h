#pragma once
// A blocking libpq session for clients (the Publisher, dispatcherctl): how they connect, who
// owns the connection, and how libpq's messages are put on one line. The service itself uses
// the non-blocking broker in dispatcherd/brokers/. libpq is called through the table of
// dispatcherd/libpq_api.h (loaded with dlopen on the first open), not linked.

#include <memory>
#include <string>

#include "dispatcherd/result.h"

struct pg_conn;

namespace dispatcherd {

struct LibPq;

/// Owns one libpq connection (PQfinish on destruction); move-only. Server notices go to our
/// log instead of raw to stderr.
class PgConn {
 public:
  /// Connects (blocking) with `conninfo`; client_encoding is forced to UTF8 (payloads are
  /// UTF-8 JSON and NOTIFY's 7999-byte limit counts server-encoding bytes) and
  /// connect_timeout defaults to `connect_timeout_seconds` unless the conninfo sets it.
  /// Errors: "cannot load libpq.so.5: <dlerror>" when libpq cannot be loaded;
  /// "cannot connect to Postgres: <libpq's message on one line>".
  static Result<PgConn> open(const std::string& conninfo, int connect_timeout_seconds);

  PgConn() = default;
  /// The raw connection, still owned here; null when none.
  pg_conn* get() const { return conn_.get(); }
  /// The libpq functions to use on get(); only valid while get() is non-null.
  const LibPq& pq() const { return *conn_.get_deleter().pq; }
  /// True when a connection is held and libpq last saw it healthy.
  bool healthy() const;
  /// libpq's current error message, on one line.
  std::string last_error() const;

 private:
  // Carries the table, so that the connection and the functions to use on it travel
  // together through moves.
  struct Finish {
    const LibPq* pq;  // value-initialised (null) in an empty PgConn
    void operator()(pg_conn* c) const;
  };
  std::unique_ptr<pg_conn, Finish> conn_;
};

/// Joins libpq's multi-line messages ("...\n", hints, one line per host tried) with "; ".
std::string pg_one_line(const char* message);

}  // namespace dispatcherd
