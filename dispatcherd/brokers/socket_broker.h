#pragma once
// SocketBroker: the Unix socket transport (upstream-spec §3.2). A listening stream socket at
// socket_path; each connection gets a client id (0, 1, 2, ... never reused); every
// newline-terminated line is one payload for the sink, with the client id as its origin;
// publish(client id, reply) writes the reply back to that connection only, chunked at 1024
// bytes, one line per piece.
//
// Unlike upstream it is bounded everywhere: clients, line length, unsent output per client,
// and the bytes and lines handled per client per loop turn. A bound that is hit costs the
// offending client its connection (logged and counted), never the service or other clients.
// Nothing blocks: every fd is non-blocking and registered on the EventLoop.

#include <sys/types.h>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "dispatcherd/brokers/broker.h"
#include "dispatcherd/config.h"
#include "dispatcherd/fd.h"
#include "dispatcherd/loop/event_loop.h"
#include "dispatcherd/result.h"

namespace dispatcherd {

/// The socket broker. Single-threaded: all calls on the loop's thread.
class SocketBroker : public Broker {
 public:
  /// Bounds (defaults match ExtensionsConfig's documented ones).
  struct Limits {
    std::size_t max_clients = 64;                 ///< connections beyond this are closed at once
    std::size_t max_line_bytes = 1u << 20;        ///< a longer line disconnects its client
    unsigned mode = 0600;                         ///< permission bits of the socket file
    std::size_t max_output_bytes = 64u << 20;     ///< unsent reply bytes per client
    std::size_t read_bytes_per_turn = 64u << 10;  ///< per client per loop turn
    std::size_t lines_per_turn = 256;             ///< per client per loop turn

    /// The bounds the config file carries (extensions.max_socket_*, socket_mode).
    static Limits from(const ExtensionsConfig& ext);
  };

  /// Does not touch the file system yet (listen() / start() do).
  SocketBroker(EventLoop& loop, const SocketConfig& config, Limits limits, PayloadSink sink);
  ~SocketBroker() override;
  SocketBroker(const SocketBroker&) = delete;
  SocketBroker& operator=(const SocketBroker&) = delete;

  /// "socket".
  std::string_view name() const override { return "socket"; }

  /// Binds and listens; call at start-up to learn about a fatal problem. A socket file left
  /// by a dead server (connect() refused) is replaced; an error when a live server answers on
  /// the path, when the path exists and is not a socket, or when it is too long for
  /// sockaddr_un. The file gets `limits.mode` before any client can connect. Idempotent once
  /// listening.
  Status listen();
  /// listen() if not yet listening; a failure is logged and leaves the broker failed (not
  /// ready, status() shows "error"), never thrown.
  void start() override;
  /// Closes the listener and every client (unsent replies are dropped) and removes the socket
  /// file if it is still the one this broker created.
  void stop() override;
  /// Writes `payload` to client `target` (its decimal id) as v1 chunks of at most 1024 bytes,
  /// each followed by "\n". A reply for a gone or unknown client is dropped (logged at debug,
  /// counted); a client whose unsent output would exceed max_output_bytes is disconnected.
  void publish(std::string_view target, std::string_view payload) override;
  /// Replies go back on the connection the request came from (§3.2).
  std::string reply_target(std::string_view origin, std::string_view) const override {
    return std::string(origin);
  }
  /// True while listening.
  bool ready() const override { return listener_.valid(); }
  /// produced_count, recycle_count (always 0), uptime_seconds, and ours: clients,
  /// clients_total, rejected_clients, oversized_lines, slow_client_disconnects,
  /// dropped_replies, and "error" after a failed start.
  nlohmann::json status() const override;

  /// Connected clients now.
  std::size_t client_count() const { return clients_.size(); }
  /// The socket file's path.
  const std::string& path() const { return config_.socket_path; }

 private:
  struct Client {
    std::uint64_t id = 0;
    Fd fd;
    std::string in;            ///< bytes read, not yet handed out as lines
    std::size_t scanned = 0;   ///< prefix of `in` known to hold no '\n'
    std::string out;           ///< bytes not yet written
    std::size_t out_pos = 0;   ///< written prefix of `out`
    bool eof = false;          ///< peer closed its side; close once output is flushed
    bool backlog = false;      ///< complete lines left over at the per-turn budget
    std::uint32_t events = 0;  ///< what the loop watches now
  };

  void on_accept();
  void on_client_event(std::uint64_t id, std::uint32_t events);
  /// Reads once (up to the per-turn budget); false when the client was closed.
  bool read_client(Client& c);
  /// Hands complete lines to the sink up to the per-turn budget; false when the client is gone.
  bool process_lines(std::uint64_t id);
  /// Writes what the kernel takes; false when the client was closed.
  bool flush(Client& c);
  void update_events(Client& c);
  void close_client(std::uint64_t id, std::string_view why);
  Client* find(std::uint64_t id);
  void remove_file();

  EventLoop& loop_;
  SocketConfig config_;
  Limits limits_;
  PayloadSink sink_;
  Fd listener_;
  bool have_inode_ = false;  ///< dev_/ino_ identify the file we bound
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::string error_;  ///< why start() failed, "" otherwise
  std::map<std::uint64_t, std::unique_ptr<Client>> clients_;
  std::uint64_t next_client_id_ = 0;
  MonoTime created_at_ = 0;
  EventLoop::TimerId accept_pause_timer_ = 0;
  /// Deferred callbacks and timers hold a weak_ptr to this, so none runs after destruction.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  std::uint64_t produced_count_ = 0;
  std::uint64_t rejected_clients_ = 0;
  std::uint64_t oversized_lines_ = 0;
  std::uint64_t slow_client_disconnects_ = 0;
  std::uint64_t dropped_replies_ = 0;
};

}  // namespace dispatcherd
