#pragma once
// A blocking libpq connection for one-shot tools (dispatcherctl): LISTEN, publish with
// pg_notify in autocommit, and wait for notifications until a deadline. The service uses its
// own non-blocking broker; a CLI that does one round trip is simpler blocking.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/pg_conn.h"
#include "dispatcherd/result.h"

namespace dispatcherctl {

/// One Postgres session in autocommit mode with client_encoding UTF8.
class PgClient {
 public:
  /// Connects with `conninfo` (key=value or URI). A connect_timeout of 10 s applies unless
  /// the conninfo sets one. The error is one line, "cannot connect to Postgres: " + libpq's
  /// message (which names host and port) with its lines joined by "; ".
  static dispatcherd::Result<PgClient> connect(const std::string& conninfo);

  PgClient(PgClient&&) noexcept = default;
  PgClient& operator=(PgClient&&) noexcept = default;
  ~PgClient();

  /// LISTEN on `channel` (quoted, so case and any character are kept).
  dispatcherd::Status listen(std::string_view channel);
  /// SELECT pg_notify($1, $2): one statement, so its own transaction.
  dispatcherd::Status notify(std::string_view channel, std::string_view payload);

  /// Called per notification with (channel, payload); return true to stop waiting.
  using NotifyHandler = std::function<bool(std::string_view, std::string_view)>;
  /// Hands every notification to `handler` until it returns true or `deadline` passes
  /// (notifications already queued are handed over even when the deadline has passed).
  dispatcherd::Status wait(std::chrono::steady_clock::time_point deadline,
                           const NotifyHandler& handler);

 private:
  explicit PgClient(dispatcherd::PgConn conn) : conn_(std::move(conn)) {}
  dispatcherd::Status exec_params(const char* sql, std::vector<const char*> params);
  // Hands queued notifications over; true when the handler asked to stop.
  bool drain(const NotifyHandler& handler);
  std::string last_error() const;

  dispatcherd::PgConn conn_;
};

}  // namespace dispatcherctl
