#pragma once
// Publishing task messages over pg_notify from C++ (upstream-spec §11): the message body the
// way upstream's publisher builds it, the v1 chunking above 7999 bytes (§2.4), and a batch
// call that sends many messages in one round trip (libpq pipeline mode).
//
// pg_notify is fire-and-forget: a message published while no service listens on its channel
// is gone, and every service listening on the channel runs it (DESIGN §9). A successful
// publish means Postgres accepted (committed) the notification, nothing more.
//
// libpq is used underneath; no libpq type appears here (the connection lives in Impl).

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dispatcherd/chunking.h"
#include "dispatcherd/message.h"
#include "dispatcherd/result.h"

namespace dispatcherd {

/// One task message to publish: upstream's apply_async options (§11.1) plus the fields of
/// §2.2 a publisher may set. Empty/zero options are left out of the body, like upstream does.
struct TaskMessage {
  std::string task;                          ///< registered task name; required
  std::string queue;                         ///< channel; "" = the publisher's default
  std::string uuid;                          ///< "" = a fresh uuid4
  nlohmann::json args = nlohmann::json();    ///< array or null; sent only when non-empty
  nlohmann::json kwargs = nlohmann::json();  ///< object or null; sent only when non-empty
  double timeout = 0;                        ///< seconds of run time; sent only when > 0
  std::optional<double> delay;               ///< seconds before processing; sent when set
  std::optional<OnDuplicate> on_duplicate;   ///< §8.1 policy; sent when set
  bool bind = false;                         ///< `"bind": true` when set (§7.10)
  std::optional<double> time_pub;            ///< epoch seconds; unset = now
  nlohmann::json extra = nlohmann::json();   ///< object or null: other keys (e.g. `guid`,
                                             ///< `callbacks`), appended after ours
};

/// Parses an on_duplicate name as on the wire ("parallel", "discard", "serial",
/// "queue_one"); nullopt for anything else.
std::optional<OnDuplicate> parse_on_duplicate(std::string_view name);

/// The JSON text of `m` in upstream's key order: task, time_pub, uuid, args, kwargs, bind,
/// timeout, delay, on_duplicate, then the `extra` keys; Python's json.dumps format (", " and
/// ": ", ASCII-only). `now` is used when m.time_pub is unset and `uuid` when m.uuid is empty.
/// Errors: empty task, args not an array, kwargs/extra not an object, a negative or
/// non-finite timeout/delay/time_pub, an `extra` key that one of the fields above owns.
Result<std::string> encode_task_message(const TaskMessage& m, double now, std::string_view uuid);

/// How publish_batch() groups messages into transactions.
enum class BatchMode {
  /// Each message (all of its chunks) is its own transaction, as if published one by one:
  /// a failing message does not stop the others. Never merges identical messages.
  TransactionPerMessage,
  /// The whole batch is one transaction: every message is delivered, at commit, or none is.
  /// Postgres delivers identical (channel, payload) pairs of one transaction once, so two
  /// messages with the same body (same uuid and time_pub) arrive as one.
  SingleTransaction,
};

/// Where a published message went.
struct Published {
  std::string uuid;        ///< the message's uuid (the generated one when none was given)
  std::string channel;     ///< the channel it was sent on
  std::size_t pieces = 1;  ///< notifications it took: 1, or its chunk count
};

/// A message of a batch that was not delivered.
struct PublishFailure {
  std::size_t index = 0;  ///< position in the batch
  std::string uuid;
  std::string error;  ///< Postgres' or libpq's message, one line
};

/// What publish_batch() did: `published` holds the delivered messages in batch order,
/// `failures` the others (only ever non-empty in TransactionPerMessage mode).
struct BatchReport {
  std::vector<Published> published;
  std::vector<PublishFailure> failures;
  /// True when every message was delivered.
  bool ok() const { return failures.empty(); }
};

/// How to connect and where to publish by default.
struct PublisherOptions {
  std::string conninfo;  ///< libpq key=value string or URI; client_encoding is forced to UTF8
  std::string default_channel;       ///< used when TaskMessage::queue is empty; "" = none
  int connect_timeout_seconds = 10;  ///< applies unless the conninfo sets connect_timeout
  double io_timeout_seconds = 30;    ///< a call fails after this long without an answer; 0 = never
  std::size_t max_payload_bytes = kPgNotifyMaxBytes;  ///< chunk above this (tests lower it)
};

/// A blocking pg_notify publisher on one Postgres connection (autocommit, pipeline mode for
/// batches). Not thread-safe: one Publisher per thread. Never throws: every failure is a
/// Result error. Safe to destroy at any time (closes its connection).
class Publisher {
 public:
  /// Opens the connection. Error: "cannot connect to Postgres: <libpq's message>".
  static Result<Publisher> connect(PublisherOptions options);

  /// Move-only: the connection moves with it; a moved-from Publisher may only be destroyed or
  /// assigned to.
  Publisher(Publisher&&) noexcept;
  /// Closes this publisher's connection and takes `other`'s.
  Publisher& operator=(Publisher&&) noexcept;
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;
  /// Closes the connection (PQfinish).
  ~Publisher();

  /// Builds, chunks and publishes one message in its own transaction. Error when the message
  /// is invalid (see encode_task_message), its channel is missing or invalid (nothing is
  /// sent), or Postgres refuses it.
  Result<Published> publish(const TaskMessage& message);

  /// Publishes every message in one pipelined round trip, grouped into transactions as `mode`
  /// says. Every message is encoded and checked first: when one is invalid (or has no valid
  /// channel) the Error names it and nothing is sent. In SingleTransaction mode a refused
  /// notification, or a lost connection, is an Error and nothing was delivered. In
  /// TransactionPerMessage mode refused messages are listed in BatchReport::failures.
  Result<BatchReport> publish_batch(const std::vector<TaskMessage>& messages,
                                    BatchMode mode = BatchMode::TransactionPerMessage);

  /// Publishes a ready JSON payload (chunked above the limit) on `channel`, in its own
  /// transaction; for control requests and bodies built elsewhere. Returns the piece count.
  /// Error for an invalid channel or a payload holding a NUL byte (libpq cannot send it).
  Result<std::size_t> publish_payload(std::string_view channel, std::string_view payload);

 private:
  struct Impl;
  explicit Publisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dispatcherd
