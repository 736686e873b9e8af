#pragma once
// PgConnection: one non-blocking libpq connection driven by the EventLoop as a passive state
// machine (cpp-libraries.md §1.2-§1.6). It connects with PQconnectStartParams/PQconnectPoll,
// runs every command in libpq pipeline mode with a Sync after each statement (so each one is
// its own autocommit transaction, and Postgres never collapses identical NOTIFY payloads),
// and hands notifications to its owner with a per-turn budget: libpq buffers notifications
// and no new EPOLLIN arrives for them, so the rest is drained on the next turn via defer().
//
// It never blocks, with one documented exception: for a host *name* libpq resolves the
// address with a blocking getaddrinfo() inside PQconnectStart. Use `hostaddr=` or a Unix
// socket directory in the conninfo to avoid it; solving it (resolving off the loop) is left
// to the caller.
//
// The object is reusable: after a loss or close() the owner may call connect() again.
// Owner callbacks may call close() (or connect()) on this object from inside themselves.

#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/loop/event_loop.h"

namespace dispatcherd {

/// Tunables of one connection.
struct PgConnectionOptions {
  /// A connect attempt that has not finished by then fails ("connect timeout"); libpq's own
  /// connect_timeout is not enforced in non-blocking mode, so we keep the clock ourselves.
  double connect_timeout_seconds = 10.0;
  /// Notifications handed to the owner per loop turn before deferring the rest.
  std::size_t notify_budget = 512;
  /// Statements sent to the server but not yet answered; the rest wait in our queue, so a
  /// burst of publishes does not grow libpq's output buffer without limit.
  std::size_t max_in_flight = 256;
};

/// What one command produced.
struct PgCommandResult {
  bool ok = false;
  /// True when the command never ran because the connection closed or was lost first.
  bool not_sent = false;
  std::string error;  ///< server or libpq error text when !ok
  std::string value;  ///< first field of the first row, "" when there is none
};

/// One PGconn on the loop (RAII: the destructor unwatches and PQfinish-es).
class PgConnection {
 public:
  /// Connection life-cycle as the owner sees it.
  enum class State { Closed, Connecting, Ready };

  /// Events delivered to the owner.
  struct Handlers {
    /// The connection is usable (pipeline mode entered); commands sent now go out at once.
    std::function<void()> connected;
    /// One NOTIFY; the views are valid only during the call.
    std::function<void(std::string_view channel, std::string_view payload)> notification;
    /// The connect attempt failed or an established connection died; `was_ready` tells which.
    /// The object is Closed when this runs; pending commands were already failed.
    std::function<void(const std::string& reason, bool was_ready)> lost;
  };

  /// Called once per command with its outcome.
  using ResultCallback = std::function<void(const PgCommandResult&)>;

  /// `conninfo` is a libpq conninfo string or URI; client_encoding=UTF8 is forced, and
  /// application_name=dispatcherd and TCP keepalives are added unless it sets them.
  PgConnection(EventLoop& loop, std::string conninfo, Handlers handlers,
               PgConnectionOptions options = {});
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  /// Starts a non-blocking connect (closing any current connection first). The outcome comes
  /// later through `connected` or `lost`, never from inside this call.
  void connect();

  /// Replaces the conninfo that the next connect() uses.
  void set_conninfo(std::string conninfo) { conninfo_ = std::move(conninfo); }

  /// Closes now without telling the owner: unwatches, fails pending commands (not_sent) and
  /// PQfinish-es. `goodbye_sql`, when given and connected, is sent best-effort first (never
  /// waited for), e.g. "UNLISTEN *".
  void close(const char* goodbye_sql = nullptr);

  /// Queues a statement with text parameters; it is sent when connected (at once if Ready).
  /// `cb` (may be empty) runs exactly once: with the result, or not_sent on close/loss.
  void send(std::string sql, std::vector<std::string> params, ResultCallback cb);

  /// Current state.
  State state() const { return state_; }
  /// True when Ready.
  bool ready() const { return state_ == State::Ready; }
  /// Backend process id of the server session, when connected.
  std::optional<int> backend_pid() const;
  /// Commands queued or in flight.
  std::size_t pending_commands() const { return queue_.size() + in_flight_.size(); }
  /// How often the notification drain stopped at its budget and deferred to the next turn:
  /// an owner compares two readings to tell that a backlog was being drained in between.
  std::uint64_t drain_deferrals() const { return drain_deferrals_; }
  /// True while libpq holds notifications not yet handed over (a drain is deferred).
  bool backlog_pending() const { return backlog_pending_; }
  /// Notifications handed to the owner so far (over all connections of this object).
  std::uint64_t notifications_received() const { return notifications_; }

  /// The conninfo keywords/values actually used (for tests and the log; no secrets added).
  static std::vector<std::pair<std::string, std::string>> connect_params(
      const std::string& conninfo);

 private:
  struct Command {
    std::string sql;
    std::vector<std::string> params;
    ResultCallback cb;
    bool reported = false;  ///< the first result was delivered; waiting for its Sync
  };

  void on_connect_event();
  void watch_socket(std::uint32_t events);
  void on_io(std::uint32_t events);
  bool process_results();
  bool flush_output();
  void pump_queue();
  void drain_notifications();
  void schedule_drain();
  void fail(const std::string& reason);
  void teardown(const char* goodbye_sql);
  void update_write_interest();
  static void notice_processor(void* arg, const char* message);

  EventLoop& loop_;
  std::string conninfo_;
  Handlers handlers_;
  PgConnectionOptions options_;
  PGconn* conn_ = nullptr;
  int fd_ = -1;                ///< socket currently watched, -1 when none
  std::uint32_t watched_ = 0;  ///< events currently watched on fd_
  bool want_write_ = false;    ///< PQflush returned 1: output is waiting for EPOLLOUT
  State state_ = State::Closed;
  EventLoop::TimerId connect_timer_ = 0;
  std::deque<Command> queue_;      ///< not yet sent
  std::deque<Command> in_flight_;  ///< sent, oldest first, each followed by a Sync
  std::uint64_t generation_ = 0;   ///< bumped by every connect/close, to spot re-entrancy
  std::uint64_t drain_deferrals_ = 0;
  std::uint64_t notifications_ = 0;
  bool backlog_pending_ = false;
  bool drain_scheduled_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  ///< deferred callbacks check it
};

}  // namespace dispatcherd
