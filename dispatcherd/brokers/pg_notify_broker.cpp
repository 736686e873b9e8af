#include "dispatcherd/brokers/pg_notify_broker.h"

#include <algorithm>
#include <cstdlib>
#include <iomanip>
#include <sstream>
#include <utility>

#include "dispatcherd/channel_name.h"
#include "dispatcherd/chunking.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"

namespace dispatcherd {
namespace {

std::string seconds_text(double s) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(3) << s;
  return os.str();
}

std::string list_text(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += ", ";
    out += names[i];
  }
  return out + "]";
}

constexpr const char* kPublishSql = "SELECT pg_notify($1, $2)";

}  // namespace

PgNotifyBroker::PgNotifyBroker(EventLoop& loop, const PgNotifyConfig& config, PayloadSink sink,
                               PgNotifyBrokerOptions options)
    : loop_(loop),
      config_(config),
      sink_(std::move(sink)),
      options_(std::move(options)),
      broker_id_("broker_" + uuid4_underscored()) {
  channels_ = options_.channels ? *options_.channels : config_.channels;
  // A bad name would make LISTEN listen somewhere else (Postgres truncates with a NOTICE);
  // config validation should have refused it, so here it is only logged and skipped.
  for (const auto& ch : channels_) {
    if (auto v = validate_channel_name(ch); !v) {
      LOG_ERROR("pg_notify: not listening on invalid channel '" << ch
                                                                << "': " << v.error().message);
      continue;
    }
    listen_channels_.push_back(ch);
  }
  self_check_enabled_ = config_.max_connection_idle_seconds.has_value();
  if (self_check_enabled_) {
    idle_seconds_ = *config_.max_connection_idle_seconds;
    max_age_seconds_ = config_.max_self_check_message_age_seconds.value_or(idle_seconds_);
    self_check_channel_ = "self_check_" + uuid4_underscored();
    listen_channels_.push_back(self_check_channel_);
  }
  backoff_ = options_.reconnect_initial_seconds;
  PgConnection::Handlers handlers;
  handlers.connected = [this] { on_connected(); };
  handlers.notification = [this](std::string_view ch, std::string_view payload) {
    on_notification(ch, payload);
  };
  handlers.lost = [this](const std::string& reason, bool was_ready) {
    on_lost(reason, was_ready, false);
  };
  conn_ = std::make_unique<PgConnection>(loop_, config_.conninfo, std::move(handlers),
                                         options_.connection);
}

PgNotifyBroker::~PgNotifyBroker() {
  stop();
}

void PgNotifyBroker::start() {
  if (started_) return;
  if (config_.conninfo_source.pending) {
    if (Status st = resolve_conninfo(config_); !st) {
      if (options_.config_error)
        options_.config_error(st.error());
      else
        LOG_ERROR("pg_notify: not starting: " << st.error().message);
      return;
    }
    conn_->set_conninfo(config_.conninfo);
  }
  started_ = true;
  start_time_ = loop_.now();
  begin_connect();
}

void PgNotifyBroker::stop() {
  if (!started_) return;
  started_ = false;
  if (reconnect_timer_) loop_.cancel(reconnect_timer_);
  if (check_timer_) loop_.cancel(check_timer_);
  reconnect_timer_ = check_timer_ = 0;
  check_in_progress_ = false;
  ready_ = false;
  // UNLISTEN * is what upstream sends on leaving its loop; closing the session unlistens too,
  // so it is sent without waiting for the answer.
  conn_->close(conn_->ready() ? "UNLISTEN *" : nullptr);
  log_lost_drops();
}

void PgNotifyBroker::begin_connect() {
  reconnect_timer_ = 0;
  ++connect_attempts_;
  connect_started_ = loop_.now();
  conn_->connect();
}

void PgNotifyBroker::on_connected() {
  LOG_DEBUG("pg_notify connected (backend pid " << conn_->backend_pid().value_or(0)
                                                << "), sending LISTEN");
  listens_pending_ = listen_channels_.size();
  if (listens_pending_ == 0) {
    on_listening();  // a publish-only client
    return;
  }
  for (const auto& ch : listen_channels_) {
    conn_->send("LISTEN " + quote_identifier(ch), {},
                [this, ch](const PgCommandResult& r) { on_listen_result(ch, r); });
  }
}

void PgNotifyBroker::on_listen_result(const std::string& channel, const PgCommandResult& r) {
  if (r.not_sent) return;  // the connection went away; on_lost handles it
  if (!r.ok) {
    recycle("LISTEN on channel '" + channel + "' failed: " + r.error);
    return;
  }
  if (listens_pending_ > 0 && --listens_pending_ == 0) on_listening();
}

void PgNotifyBroker::on_listening() {
  MonoTime now = loop_.now();
  ready_ = true;
  backoff_ = options_.reconnect_initial_seconds;
  LOG_INFO("pg_notify connection established in " << seconds_text(now - connect_started_)
                                                  << " s, listening on "
                                                  << list_text(listen_channels_));
  if (outage_start_ && ever_listening_) {
    double outage = now - *outage_start_;
    outage_total_ += outage;
    ++reconnects_;
    LOG_INFO("pg_notify reconnected after " << seconds_text(outage) << " s outage");
  }
  outage_start_.reset();
  ever_listening_ = true;
  arm_self_check();
}

void PgNotifyBroker::recycle(const std::string& reason) {
  // Closing fails the queued pieces first (counted as dropped), then the loss is handled as
  // if the server had dropped us.
  bool was_ready = conn_->state() != PgConnection::State::Closed;
  conn_->close();
  on_lost(reason, was_ready, true);
}

void PgNotifyBroker::on_lost(const std::string& reason, bool was_ready, bool recycled) {
  MonoTime now = loop_.now();
  ready_ = false;
  listens_pending_ = 0;
  check_in_progress_ = false;  // upstream resets self-check state on recycle
  if (check_timer_) loop_.cancel(check_timer_);
  check_timer_ = 0;
  last_error_ = reason;
  ++recycle_count_;
  if (ever_listening_ && !outage_start_) outage_start_ = now;
  double delay = backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max_seconds);
  if (recycled) {
    LOG_ERROR("pg_notify connection recycled: " << reason << "; reconnecting in "
                                                << seconds_text(delay) << " s");
  } else if (was_ready) {
    LOG_ERROR("pg_notify connection lost: " << reason << "; reconnecting in " << seconds_text(delay)
                                            << " s");
  } else {
    LOG_WARNING("pg_notify connect attempt " << connect_attempts_ << " failed: " << reason
                                             << "; retrying in " << seconds_text(delay) << " s");
  }
  log_lost_drops();
  if (!started_) return;
  if (reconnect_timer_) loop_.cancel(reconnect_timer_);
  reconnect_timer_ = loop_.after(delay, [this] { begin_connect(); });
}

void PgNotifyBroker::log_lost_drops() {
  if (dropped_lost_unlogged_ == 0) return;
  // A reply to a dead requester is useless later, so pieces are not kept across a loss.
  LOG_WARNING("pg_notify dropped " << dropped_lost_unlogged_
                                   << " queued message piece(s): connection closed");
  dropped_lost_unlogged_ = 0;
}

void PgNotifyBroker::on_notification(std::string_view channel, std::string_view payload) {
  ++produced_count_;
  if (self_check_enabled_ && channel == self_check_channel_ && !verify_self_check(payload)) {
    return;  // failed check: the connection was recycled, like upstream's raise
  }
  // Like upstream, the self-check message also goes on through the pipeline (§3.1.6 quirk).
  if (sink_) sink_(channel, payload);
}

bool PgNotifyBroker::verify_self_check(std::string_view payload) {
  auto obj = nlohmann::json::parse(payload, nullptr, false);
  if (!obj.is_object() || !obj.contains("self_check")) return true;
  auto task = obj.find("task");
  if (task == obj.end() || !task->is_string() ||
      task->get_ref<const std::string&>().find(broker_id_) == std::string::npos) {
    return true;
  }
  if (!check_in_progress_) {
    LOG_DEBUG("self check message for broker " << broker_id_ << " arrived with no check pending");
    return true;
  }
  check_in_progress_ = false;
  double delta = loop_.now() - check_sent_at_;
  // A check that waited behind a backlog we were busy draining says nothing bad about the
  // connection: the message did arrive, late only because of our own queue.
  if (delta < max_age_seconds_ || check_delayed_by_backlog_ || busy_since_check()) {
    ++check_success_count_;
    check_total_time_ += delta;
    check_max_time_ = std::max(check_max_time_, delta);
    return true;
  }
  std::string msg = "self check failed, message received after " + seconds_text(delta) + " seconds";
  ++check_failure_count_;
  LOG_ERROR(msg);
  recycle(msg);
  return false;
}

bool PgNotifyBroker::busy_since_check() const {
  return conn_->drain_deferrals() != deferrals_at_check_ || conn_->backlog_pending();
}

void PgNotifyBroker::arm_self_check() {
  if (!self_check_enabled_ || !started_) return;
  if (check_timer_) loop_.cancel(check_timer_);
  check_timer_ = loop_.after(idle_seconds_, [this] {
    check_timer_ = 0;
    on_self_check_timer();
  });
}

void PgNotifyBroker::on_self_check_timer() {
  if (!ready_) return;  // re-armed when LISTEN succeeds again
  if (check_in_progress_) {
    if (busy_since_check()) {
      LOG_INFO("self check for broker " << broker_id_
                                        << " still pending while draining a backlog; waiting");
      check_delayed_by_backlog_ = true;
      deferrals_at_check_ = conn_->drain_deferrals();
      arm_self_check();
      return;
    }
    std::string msg = "self check message for broker " + broker_id_ + " did not arrive in " +
                      seconds_text(loop_.now() - check_sent_at_) + " seconds";
    ++check_failure_count_;
    LOG_ERROR(msg);
    recycle(msg);
    return;
  }
  nlohmann::json check = {{"self_check", true}, {"task", "lambda: \"" + broker_id_ + "\""}};
  check_in_progress_ = true;
  check_delayed_by_backlog_ = false;
  check_sent_at_ = loop_.now();
  deferrals_at_check_ = conn_->drain_deferrals();
  enqueue_piece(self_check_channel_, dump_python(check));
  arm_self_check();
}

Result<std::string> PgNotifyBroker::resolve_publish_channel(std::string_view target) const {
  std::string ch;
  if (!target.empty()) {
    ch = target;
  } else if (config_.default_publish_channel) {
    ch = *config_.default_publish_channel;
  } else if (channels_.size() == 1) {
    ch = channels_.front();
  } else {
    return Error{
        "Could not determine a channel to use publish to from settings or PGNotify "
        "config"};
  }
  if (auto v = validate_channel_name(ch); !v) return v.error();
  return ch;
}

void PgNotifyBroker::publish(std::string_view target, std::string_view payload) {
  auto channel = resolve_publish_channel(target);
  if (!channel) {
    ++publish_errors_;
    LOG_ERROR("pg_notify publish failed: " << channel.error().message);
    return;
  }
  auto pieces = split_message(payload, kPgNotifyMaxBytes);
  if (!pieces) {
    ++publish_errors_;
    LOG_ERROR("pg_notify publish to " << *channel << " failed: " << pieces.error().message);
    return;
  }
  std::size_t bytes = 0;
  for (const auto& p : *pieces) bytes += p.size();
  if (queued_pieces_ + pieces->size() > options_.max_queued_pieces ||
      queued_bytes_ + bytes > options_.max_queued_bytes) {
    // The whole message goes: a chunked message missing pieces is useless to the receiver.
    if (dropped_overflow_++ % 1000 == 0) {
      LOG_WARNING("pg_notify outgoing queue full ("
                  << queued_pieces_ << " pieces, " << queued_bytes_ << " bytes): dropped a "
                  << payload.size() << "-byte message to " << *channel << " (" << dropped_overflow_
                  << " dropped so far)");
    }
    return;
  }
  LOG_DEBUG("pg_notify queueing message of " << payload.size() << " chars as " << pieces->size()
                                             << " chunk(s) to " << *channel);
  for (auto& p : *pieces) enqueue_piece(*channel, std::move(p));
  // Upstream's listen loop restarts its deadline after sending replies. While a check is
  // pending the deadline is kept, so a steady reply stream cannot hide a dead LISTEN.
  if (ready_ && !check_in_progress_) arm_self_check();
}

void PgNotifyBroker::enqueue_piece(const std::string& channel, std::string piece) {
  std::size_t size = piece.size();
  ++queued_pieces_;
  queued_bytes_ += size;
  conn_->send(kPublishSql, {channel, std::move(piece)}, [this, size](const PgCommandResult& r) {
    --queued_pieces_;
    queued_bytes_ -= size;
    if (r.ok) {
      ++published_pieces_;
    } else if (r.not_sent) {
      ++dropped_lost_;
      ++dropped_lost_unlogged_;
    } else {
      ++publish_errors_;
      LOG_ERROR("pg_notify publish failed: " << r.error);
    }
  });
}

void PgNotifyBroker::request_queue_usage() {
  if (!conn_->ready()) return;
  conn_->send("SELECT pg_notification_queue_usage()", {}, [this](const PgCommandResult& r) {
    if (r.ok) queue_usage_ = std::strtod(r.value.c_str(), nullptr);
  });
}

nlohmann::json PgNotifyBroker::status() const {
  using nlohmann::json;
  MonoTime now = loop_.now();
  json check = {{"enabled", self_check_enabled_},
                {"success_count", check_success_count_},
                {"failure_count", check_failure_count_}};
  if (check_success_count_ > 0) {
    check["average_time_seconds"] = check_total_time_ / static_cast<double>(check_success_count_);
    check["max_time_seconds"] = check_max_time_;
  } else {
    check["average_time_seconds"] = nullptr;
    check["max_time_seconds"] = nullptr;
  }
  json conn = {
      {"connected", conn_->ready()},
      {"reconnects", reconnects_},
      {"connect_attempts", connect_attempts_},
      {"outage_seconds_total", outage_total_ + (outage_start_ ? now - *outage_start_ : 0.0)},
      {"current_outage_seconds", outage_start_ ? json(now - *outage_start_) : json(nullptr)},
      {"last_error", last_error_ ? json(*last_error_) : json(nullptr)},
      {"backend_pid", conn_->backend_pid() ? json(*conn_->backend_pid()) : json(nullptr)},
      {"publish_queue_pieces", queued_pieces_},
      {"publish_queue_bytes", queued_bytes_},
      {"published_pieces", published_pieces_},
      {"publish_dropped_overflow", dropped_overflow_},
      {"publish_dropped_lost", dropped_lost_},
      {"publish_errors", publish_errors_},
      {"notify_drain_deferrals", conn_->drain_deferrals()},
      {"notification_queue_usage", queue_usage_ ? json(*queue_usage_) : json(nullptr)},
  };
  return json{{"produced_count", produced_count_},
              {"recycle_count", recycle_count_},
              {"uptime_seconds", started_ ? now - start_time_ : 0.0},
              {"broker_self_check", check},
              {"connection", conn}};
}

}  // namespace dispatcherd
