#include "dispatcherd/publish.h"

#include <chrono>
#include <cmath>

#include "dispatcherd/channel_name.h"
#include "dispatcherd/control_protocol.h"
#include "dispatcherd/log.h"
#include "publish_pipeline.h"

namespace dispatcherd {

using publish_detail::Notification;
using publish_detail::Segment;

namespace {

// Keys encode_task_message writes itself; `extra` may not set them (it would either be
// silently overwritten or give the message two meanings).
constexpr std::string_view kOwnKeys[] = {"task", "time_pub", "uuid",  "args",        "kwargs",
                                         "bind", "timeout",  "delay", "on_duplicate"};

Status check_seconds(const char* name, double v) {
  if (!std::isfinite(v) || v < 0)
    return Error{std::string("field '") + name + "' must be a finite number >= 0"};
  return Ok{};
}

double now_epoch_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One message ready to send: its channel and its notification payloads (1 or its chunks).
struct Prepared {
  std::string channel;
  std::string uuid;
  std::vector<std::string> pieces;
};

}  // namespace

std::optional<OnDuplicate> parse_on_duplicate(std::string_view name) {
  for (OnDuplicate d :
       {OnDuplicate::Parallel, OnDuplicate::Discard, OnDuplicate::Serial, OnDuplicate::QueueOne})
    if (on_duplicate_name(d) == name) return d;
  return std::nullopt;
}

Result<std::string> encode_task_message(const TaskMessage& m, double now, std::string_view uuid) {
  if (m.task.empty()) return Error{"field 'task' must be a non-empty string"};
  if (!m.args.is_null() && !m.args.is_array()) return Error{"field 'args' must be an array"};
  if (!m.kwargs.is_null() && !m.kwargs.is_object())
    return Error{"field 'kwargs' must be an object"};
  if (!m.extra.is_null() && !m.extra.is_object()) return Error{"'extra' must be an object"};
  if (auto s = check_seconds("timeout", m.timeout); !s.ok()) return s.error();
  if (m.delay)
    if (auto s = check_seconds("delay", *m.delay); !s.ok()) return s.error();
  const double time_pub = m.time_pub.value_or(now);
  if (auto s = check_seconds("time_pub", time_pub); !s.ok()) return s.error();

  // Upstream's body order (§11.1): task, time_pub, uuid, args, kwargs, bind, timeout, then
  // the submission-time processor options. Order is not wire-significant, but identical
  // bodies make the two publishers' messages easy to compare in `running` and in logs.
  nlohmann::ordered_json body;
  body["task"] = m.task;
  body["time_pub"] = time_pub;
  body["uuid"] = uuid;
  if (m.args.is_array() && !m.args.empty()) body["args"] = m.args;
  if (m.kwargs.is_object() && !m.kwargs.empty()) body["kwargs"] = m.kwargs;
  if (m.bind) body["bind"] = true;
  if (m.timeout > 0) body["timeout"] = m.timeout;
  if (m.delay) body["delay"] = *m.delay;
  if (m.on_duplicate) body["on_duplicate"] = on_duplicate_name(*m.on_duplicate);
  if (m.extra.is_object()) {
    for (const auto& [key, value] : m.extra.items()) {
      for (std::string_view own : kOwnKeys)
        if (key == own) return Error{"'extra' may not set field '" + key + "'"};
      body[key] = value;
    }
  }
  return dump_reply(body);
}

struct Publisher::Impl {
  PublisherOptions options;
  PgConn conn;

  // Reconnects when the last session failed (only between calls: a failed batch is never
  // resent, since part of it may have been delivered).
  Status ensure_connected() {
    if (conn.healthy()) return Ok{};
    auto fresh = PgConn::open(options.conninfo, options.connect_timeout_seconds);
    if (!fresh.ok()) return fresh.error();
    conn = std::move(fresh).value();
    return Ok{};
  }

  // Encodes and splits every message; the first invalid one fails the whole call.
  Result<std::vector<Prepared>> prepare(const std::vector<TaskMessage>& messages) const {
    std::vector<Prepared> out;
    out.reserve(messages.size());
    const double now = now_epoch_seconds();
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const TaskMessage& m = messages[i];
      auto fail = [&](const std::string& why) {
        return Error{"message " + std::to_string(i) + " (task '" + m.task + "'): " + why};
      };
      Prepared p;
      p.channel = m.queue.empty() ? options.default_channel : m.queue;
      if (p.channel.empty())
        return fail("no channel: set TaskMessage::queue or PublisherOptions::default_channel");
      if (auto s = validate_channel_name(p.channel); !s.ok()) return fail(s.error().message);
      p.uuid = m.uuid.empty() ? uuid4() : m.uuid;
      auto text = encode_task_message(m, now, p.uuid);
      if (!text.ok()) return fail(text.error().message);
      auto pieces = split_message(*text, options.max_payload_bytes);
      if (!pieces.ok()) return fail(pieces.error().message);
      p.pieces = std::move(pieces).value();
      out.push_back(std::move(p));
    }
    return out;
  }

  Result<BatchReport> send(const std::vector<Prepared>& prepared, BatchMode mode) {
    BatchReport report;
    if (prepared.empty()) return report;
    if (auto s = ensure_connected(); !s.ok()) return s.error();

    // TransactionPerMessage: one segment per message, so all chunks of a message commit
    // together (a receiver never sees half of one) and messages never merge. Upstream sends
    // each chunk in its own autocommit; chunks differ by index, so both are delivered alike.
    std::vector<Segment> segments(mode == BatchMode::SingleTransaction ? 1 : prepared.size());
    std::size_t notifications = 0;
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      Segment& seg = segments[mode == BatchMode::SingleTransaction ? 0 : i];
      for (const std::string& piece : prepared[i].pieces)
        seg.push_back(Notification{prepared[i].channel, piece});
      notifications += prepared[i].pieces.size();
    }
    const auto outcome = publish_detail::run_pipeline(conn, segments, options.io_timeout_seconds);
    if (outcome.broken) conn = PgConn();  // reconnect on the next call

    if (mode == BatchMode::SingleTransaction) {
      if (!outcome.errors[0].empty())
        return Error{"pg_notify batch of " + std::to_string(prepared.size()) +
                     " message(s) not delivered: " + outcome.errors[0]};
    }
    for (std::size_t i = 0; i < prepared.size(); ++i) {
      const std::string& err = outcome.errors[mode == BatchMode::SingleTransaction ? 0 : i];
      if (err.empty())
        report.published.push_back(
            {prepared[i].uuid, prepared[i].channel, prepared[i].pieces.size()});
      else
        report.failures.push_back(
            {i, prepared[i].uuid, "pg_notify to " + prepared[i].channel + " failed: " + err});
    }
    LOG_DEBUG("Sent " << report.published.size() << " pg_notify message(s) as " << notifications
                      << " notification(s), " << report.failures.size() << " failed");
    return report;
  }
};

Publisher::Publisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Publisher::Publisher(Publisher&&) noexcept = default;
Publisher& Publisher::operator=(Publisher&&) noexcept = default;
Publisher::~Publisher() = default;

Result<Publisher> Publisher::connect(PublisherOptions options) {
  if (!options.default_channel.empty())
    if (auto s = validate_channel_name(options.default_channel); !s.ok()) return s.error();
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  if (auto s = impl->ensure_connected(); !s.ok()) return s.error();
  return Publisher(std::move(impl));
}

Result<Published> Publisher::publish(const TaskMessage& message) {
  auto report = publish_batch({message}, BatchMode::TransactionPerMessage);
  if (!report.ok()) return report.error();
  if (!report->ok()) return Error{report->failures.front().error};
  return std::move(report->published.front());
}

Result<BatchReport> Publisher::publish_batch(const std::vector<TaskMessage>& messages,
                                             BatchMode mode) {
  // nlohmann may throw (bad_alloc aside, nothing here should); never let it cross the API.
  try {
    auto prepared = impl_->prepare(messages);
    if (!prepared.ok()) return prepared.error();
    return impl_->send(*prepared, mode);
  } catch (const std::exception& e) {
    return Error{std::string("publish failed: ") + e.what()};
  }
}

Result<std::size_t> Publisher::publish_payload(std::string_view channel, std::string_view payload) {
  try {
    Prepared p;
    p.channel = channel;
    if (auto s = validate_channel_name(p.channel); !s.ok()) return s.error();
    if (payload.find('\0') != std::string_view::npos) return Error{"payload holds a NUL byte"};
    auto pieces = split_message(payload, impl_->options.max_payload_bytes);
    if (!pieces.ok()) return pieces.error();
    p.pieces = std::move(pieces).value();
    std::vector<Prepared> one;
    one.push_back(std::move(p));
    auto report = impl_->send(one, BatchMode::TransactionPerMessage);
    if (!report.ok()) return report.error();
    if (!report->ok()) return Error{report->failures.front().error};
    return report->published.front().pieces;
  } catch (const std::exception& e) {
    return Error{std::string("publish failed: ") + e.what()};
  }
}

}  // namespace dispatcherd
