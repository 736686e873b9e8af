#pragma once
// The /metrics HTTP endpoint: a minimal HTTP/1.1 responder on our event loop, one request per
// connection, answering exactly as upstream's CustomHttpServer does (spec §10):
//
//   * request line and then each header line must arrive within `read_timeout` (5 s) → 408;
//   * EOF before a request line, or before the blank line ending the headers → closed with no
//     response (counted as a client disconnect);
//   * a request line that is not UTF-8, or has fewer than 3 parts → 400 `Bad Request`;
//   * anything but `GET /metrics` exactly (query strings included) → 404 `Not Found`;
//   * the render function failing → 500 `Error generating metrics`;
//   * otherwise 200 with `Content-Type: text/plain; version=0.0.4; charset=utf-8`.
//   Every response carries Content-Length and `Connection: close`, then the socket is closed.
//
// Bounds of ours (DESIGN §8): at most `max_connections` at once (extra ones are accepted and
// closed at once, counted as rejected), a request head of at most `max_head_bytes` (400,
// counted as a bad request), responses written without blocking (EPOLLOUT) and dropped if
// the client stops reading for `write_timeout`. A slow client only ever holds its own slot.
//
// After the response the write side is shut down and unread input is drained for up to
// `linger_timeout` before close(): closing with unread bytes (e.g. headers after a 400)
// would send a RST that can destroy the response before the client reads it.

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "dispatcherd/config.h"
#include "dispatcherd/fd.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/metrics/http_request.h"

namespace dispatcherd::metrics {

/// Tunables of the metrics HTTP server; the defaults are upstream's timings and our bounds.
struct HttpServerOptions {
  double read_timeout = 5.0;          ///< per line: request line, then each header line
  double write_timeout = 5.0;         ///< a client that reads nothing this long is dropped
  double linger_timeout = 1.0;        ///< after the response, wait this long for the peer's EOF
  std::size_t max_connections = 64;   ///< open connections at once; more are closed at once
  std::size_t max_head_bytes = 8192;  ///< request line plus headers; more → 400
  std::size_t accept_budget = 64;     ///< accepts per readiness event (fairness)
};

/// Counters shown in the `metrics` control command (upstream names in status()).
struct HttpServerCounters {
  std::uint64_t connections_total = 0;        ///< every accepted connection, rejected ones too
  std::uint64_t metrics_requests_served = 0;  ///< 200 responses
  std::uint64_t bad_requests = 0;             ///< 400 responses
  std::uint64_t internal_errors = 0;          ///< 500 responses
  std::uint64_t not_found_responses = 0;      ///< 404 responses
  std::uint64_t client_disconnects = 0;       ///< EOF/reset before a complete request
  std::uint64_t request_timeouts = 0;         ///< 408 responses
  std::uint64_t rejected_connections = 0;     ///< closed at once: max_connections reached
};

/// Serves GET /metrics on the loop. Not copyable; must not outlive the loop.
class MetricsHttpServer {
 public:
  /// Produces the exposition text, or nullopt when rendering failed (→ 500). An exception
  /// thrown by it is caught and also answered with 500.
  using RenderFn = std::function<std::optional<std::string>()>;

  /// Nothing is bound until start(). `config.host`/`config.port` say where to listen
  /// (`localhost` = 127.0.0.1 and, when the host has IPv6, ::1; port 0 = any free port).
  MetricsHttpServer(EventLoop& loop, MetricsConfig config, RenderFn render,
                    HttpServerOptions options = {});
  /// Stops (closes the listeners and every connection).
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  /// Binds, listens and starts accepting. On failure the error is logged and false is
  /// returned; the server is then `ready` but not running, and the service carries on.
  /// Host names other than localhost are resolved with a blocking getaddrinfo: call this
  /// at start-up, before the loop serves anything latency-sensitive.
  bool start();
  /// Closes the listeners and all connections at once. Idempotent.
  void stop();

  /// True between a successful start() and stop().
  bool is_running() const { return running_; }
  /// True once start() has been attempted (upstream's ready event, set even on failure).
  bool ready() const { return ready_; }
  /// The bound port (the real one when configured as 0), or the configured port when not
  /// bound.
  int port() const { return bound_port_ > 0 ? bound_port_ : config_.port; }
  /// Connections currently open (reading, writing or lingering).
  std::size_t open_connections() const { return conns_.size(); }
  /// The counters.
  const HttpServerCounters& counters() const { return counters_; }

  /// The `status` object of the `metrics` control command (§4.4): host, port, ready and
  /// http_server ({} before start(); else the counters, is_running and rejected_connections).
  nlohmann::json status() const;

 private:
  enum class Phase { kRequestLine, kHeaders, kWriting, kLingering };
  struct Conn {
    std::uint64_t id = 0;
    Fd fd;
    Phase phase = Phase::kRequestLine;
    std::string line;            // the line being read, up to and including '\n'
    std::size_t head_bytes = 0;  // bytes of the request head seen so far
    RequestLine request;
    std::string out;               // the response
    std::size_t out_off = 0;       // bytes of `out` already sent
    MonoTime deadline = 0;         // when the current phase times out
    EventLoop::TimerId timer = 0;  // at most one armed timer per connection
    MonoTime timer_at = 0;         // when `timer` fires
  };

  bool bind_all();
  void on_accept(int listen_fd);
  void pause_accepting();
  void on_io(std::uint64_t id, std::uint32_t events);
  void on_timer(std::uint64_t id);
  void read_request(Conn& c);
  void drain_lingering(Conn& c);
  bool consume(Conn& c, const char* data, std::size_t n);
  bool handle_line(Conn& c);
  void dispatch(Conn& c);
  void respond(Conn& c, const char* status_line, const std::string& body, const char* content_type);
  void flush(Conn& c);
  void set_deadline(Conn& c, double seconds);
  void close_conn(std::uint64_t id);
  Conn* find(std::uint64_t id);

  EventLoop& loop_;
  MetricsConfig config_;
  RenderFn render_;
  HttpServerOptions options_;
  std::vector<Fd> listeners_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  std::uint64_t next_id_ = 1;
  HttpServerCounters counters_;
  EventLoop::TimerId resume_timer_ = 0;
  int bound_port_ = 0;
  bool ready_ = false;  // start() ran (upstream then has an http_server object)
  bool running_ = false;
};

}  // namespace dispatcherd::metrics
