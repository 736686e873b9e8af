#pragma once
// PgNotifyBroker: the pg_notify transport (upstream-spec §3.1) on one non-blocking libpq
// connection. It LISTENs on the configured channels (quoted, config order) plus its private
// self-check channel, hands every notification to the sink with a per-turn budget, publishes
// replies as `SELECT pg_notify($1, $2)` (one autocommit statement per chunk, §2.4), reconnects
// with backoff when the connection dies, and proves the LISTEN really works with the
// self-check round trip of §3.1.6. Nothing here blocks the loop.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/brokers/broker.h"
#include "dispatcherd/brokers/pg_connection.h"
#include "dispatcherd/config.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/result.h"

namespace dispatcherd {

/// Knobs the config file does not carry (bounds, backoff) and overrides for clients.
struct PgNotifyBrokerOptions {
  /// First delay before reconnecting after a loss or failed attempt; doubled per failure.
  double reconnect_initial_seconds = 0.25;
  /// Cap of the reconnect delay; the delay resets after a successful LISTEN.
  double reconnect_max_seconds = 5.0;
  /// Channels to LISTEN on instead of config.channels (e.g. a control client's reply
  /// channel). The publish-channel fallback of §3.1.3 uses the effective list.
  std::optional<std::vector<std::string>> channels;
  /// Bounds of the outgoing queue (chunks not yet answered by the server); a message that
  /// does not fit is dropped whole, counted and logged.
  std::size_t max_queued_pieces = 10000;
  std::size_t max_queued_bytes = 64u << 20;
  /// Connection tunables (connect timeout, notification budget per turn, pipeline depth).
  PgConnectionOptions connection;
  /// Called from start() when a config loaded with ConninfoCheck::Deferred fails libpq's
  /// checks (`file:line:col: message`); the broker then stays stopped.
  std::function<void(const Error&)> config_error;
};

/// The pg_notify broker. Single-threaded: all calls on the loop's thread.
class PgNotifyBroker : public Broker {
 public:
  /// Does not connect yet (start() does). `sink` receives (channel, payload) per NOTIFY.
  PgNotifyBroker(EventLoop& loop, const PgNotifyConfig& config, PayloadSink sink,
                 PgNotifyBrokerOptions options = {});
  ~PgNotifyBroker() override;
  PgNotifyBroker(const PgNotifyBroker&) = delete;
  PgNotifyBroker& operator=(const PgNotifyBroker&) = delete;

  /// "pg_notify".
  std::string_view name() const override { return "pg_notify"; }
  /// Starts connecting; returns at once. Failures are logged and retried forever. A deferred
  /// conninfo is checked and assembled first (this loads libpq); see `config_error`.
  void start() override;
  /// Sends UNLISTEN * best-effort (not waited for), closes the connection, cancels timers.
  /// Unsent replies are dropped (counted).
  void stop() override;
  /// Publishes `payload` to `target` (or the §3.1.3 fallback when empty), split into chunks of
  /// at most 7999 bytes, each its own statement. Queued while connecting; dropped (counted)
  /// when the connection is lost or the queue bound is reached. Restarts the self-check
  /// period like upstream's replies do (unless a check is in progress).
  void publish(std::string_view target, std::string_view payload) override;
  /// True once every LISTEN of the current connection succeeded.
  bool ready() const override { return ready_; }
  /// produced_count, recycle_count, uptime_seconds, broker_self_check (§3.1.6), and our
  /// "connection" object (connected, reconnects, outage_seconds_total, last_error,
  /// backend_pid, publish queue counters, notification_queue_usage).
  nlohmann::json status() const override;

  /// §3.1.3: `target` when given, else default_publish_channel, else the only configured
  /// channel; the result is validated (1..63 bytes). Error text as upstream.
  Result<std::string> resolve_publish_channel(std::string_view target) const;
  /// Asks the server for pg_notification_queue_usage(); the answer lands in status()
  /// ("connection.notification_queue_usage"). Ignored while not connected.
  void request_queue_usage();

  /// "broker_<uuid4 underscored>", the id the self-check message carries.
  const std::string& broker_id() const { return broker_id_; }
  /// "self_check_<uuid4 underscored>", or "" when self-checks are disabled.
  const std::string& self_check_channel() const { return self_check_channel_; }
  /// Channels LISTENed on, in order (the self-check channel last when enabled).
  const std::vector<std::string>& listen_channels() const { return listen_channels_; }
  /// Backend pid of the current session, when connected (tests terminate it).
  std::optional<int> backend_pid() const { return conn_->backend_pid(); }

 private:
  void begin_connect();
  void on_connected();
  void on_listen_result(const std::string& channel, const PgCommandResult& r);
  void on_listening();
  void on_lost(const std::string& reason, bool was_ready, bool recycled);
  void recycle(const std::string& reason);
  void on_notification(std::string_view channel, std::string_view payload);
  bool verify_self_check(std::string_view payload);
  void arm_self_check();
  void on_self_check_timer();
  bool busy_since_check() const;
  void enqueue_piece(const std::string& channel, std::string piece);
  void log_lost_drops();

  EventLoop& loop_;
  PgNotifyConfig config_;
  PayloadSink sink_;
  PgNotifyBrokerOptions options_;
  std::vector<std::string> channels_;         ///< configured (or overridden) channels
  std::vector<std::string> listen_channels_;  ///< channels_ + self-check channel
  std::string broker_id_;
  std::string self_check_channel_;
  std::unique_ptr<PgConnection> conn_;

  bool started_ = false;
  bool ready_ = false;
  bool ever_listening_ = false;
  std::size_t listens_pending_ = 0;
  MonoTime start_time_ = 0;
  MonoTime connect_started_ = 0;
  double backoff_ = 0;
  EventLoop::TimerId reconnect_timer_ = 0;

  std::uint64_t produced_count_ = 0;
  std::uint64_t recycle_count_ = 0;
  std::uint64_t connect_attempts_ = 0;
  std::uint64_t reconnects_ = 0;
  double outage_total_ = 0;
  std::optional<MonoTime> outage_start_;
  std::optional<std::string> last_error_;

  bool self_check_enabled_ = false;
  double idle_seconds_ = 0;
  double max_age_seconds_ = 0;
  EventLoop::TimerId check_timer_ = 0;
  bool check_in_progress_ = false;
  MonoTime check_sent_at_ = 0;
  std::uint64_t deferrals_at_check_ = 0;   ///< drain deferrals when the check (re)started
  bool check_delayed_by_backlog_ = false;  ///< a period passed while draining a backlog
  std::uint64_t check_success_count_ = 0;
  std::uint64_t check_failure_count_ = 0;  ///< late or missing: each recycled the connection
  double check_total_time_ = 0;
  double check_max_time_ = 0;

  std::size_t queued_pieces_ = 0;
  std::size_t queued_bytes_ = 0;
  std::uint64_t published_pieces_ = 0;
  std::uint64_t dropped_overflow_ = 0;
  std::uint64_t dropped_lost_ = 0;
  std::uint64_t dropped_lost_unlogged_ = 0;
  std::uint64_t publish_errors_ = 0;
  std::optional<double> queue_usage_;
};

}  // namespace dispatcherd
