#pragma once
// The broker interface: a transport that delivers payloads to the service and carries
// replies back. Implementations: PgNotifyBroker (LISTEN/NOTIFY), SocketBroker (Unix socket);
// tests/support has an in-memory one. A broker is passive: it registers its fds on the event
// loop and calls the sink; it never blocks.

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace dispatcherd {

/// Receives every payload a broker reads: `origin` is the pg_notify channel or, for the
/// socket, the client id as a decimal string; it becomes the message's `channel` field.
using PayloadSink = std::function<void(std::string_view origin, std::string_view payload)>;

/// A transport of task and control messages.
class Broker {
 public:
  virtual ~Broker() = default;
  /// Short name, e.g. "pg_notify" or "socket" (producer name is "<name>-producer").
  virtual std::string_view name() const = 0;
  /// Starts connecting / listening; payloads then flow to the sink. Failures are retried
  /// by the broker itself (logged), never thrown.
  virtual void start() = 0;
  /// Stops receiving and releases its fds (pg_notify: UNLISTEN and close; socket: close and
  /// remove the file).
  virtual void stop() = 0;
  /// Sends a reply (or any message) to `target`: a channel for pg_notify, the client id for
  /// the socket. Chunked when larger than the transport's limit. Never blocks: queued when the
  /// transport is busy or down (bounded; overflow dropped and logged).
  virtual void publish(std::string_view target, std::string_view payload) = 0;
  /// Where a control reply goes: the request's `reply_to` channel for pg_notify; the socket
  /// answers the connection the request came from (`origin`) whatever `reply_to` says (§3.2).
  virtual std::string reply_target(std::string_view origin, std::string_view reply_to) const {
    (void)origin;
    return std::string(reply_to);
  }
  /// True once listening (LISTEN done / socket bound).
  virtual bool ready() const = 0;
  /// Fields for the `producers` control command (produced_count, recycle_count, ...).
  virtual nlohmann::json status() const = 0;
};

}  // namespace dispatcherd
