#include "dispatcherd/service.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "dispatcherd/brokers/pg_notify_broker.h"
#include "dispatcherd/brokers/socket_broker.h"
#include "dispatcherd/control/commands.h"
#include "dispatcherd/control_protocol.h"
#include "dispatcherd/libpq_api.h"
#include "dispatcherd/log.h"
#include "dispatcherd/message.h"
#include "dispatcherd/message_scan.h"

namespace dispatcherd {

namespace {

int cpu_count() {
  unsigned cpus = std::thread::hardware_concurrency();
  return cpus ? static_cast<int>(cpus) : 4;
}

PoolOptions pool_options(const Config& c) {
  PoolOptions o;
  o.min_workers = c.pool.min_workers;
  o.max_workers = c.pool.max_workers.value_or(cpu_count());
  o.scaledown_wait = c.pool.scaledown_wait;
  o.scaledown_interval = c.pool.scaledown_interval;
  o.worker_removal_wait = c.pool.worker_removal_wait;
  o.worker_max_lifetime = c.pool.worker_max_lifetime_seconds;
  o.cancel_grace = c.extensions.cancel_grace_seconds;
  o.max_queued = c.extensions.max_queued_tasks;
  o.max_blocked = c.extensions.max_blocked_tasks;
  o.max_tasks_per_worker = c.extensions.max_tasks_per_worker;
  o.max_worker_rss_kb = c.extensions.max_worker_rss_mb * 1024;
  return o;
}

ChunkAccumulator::Limits chunk_limits(const Config& c) {
  ChunkAccumulator::Limits l;
  l.timeout_seconds = c.main.chunk_message_timeout_seconds;
  l.max_messages = c.extensions.max_partial_messages;
  l.max_bytes = c.extensions.max_partial_bytes;
  l.max_message_bytes = c.extensions.max_message_bytes;
  return l;
}

// A short excerpt of untrusted input for a log line: printable ASCII kept, other bytes as
// \xNN, so a hostile payload cannot forge log lines or break a terminal.
std::string excerpt(std::string_view s) {
  constexpr std::size_t kMax = 200;
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s.substr(0, kMax)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > kMax) out += "...";
  return out;
}

}  // namespace

Service::Service(EventLoop& loop, const Config& config, WorkerLauncher& launcher)
    : loop_(loop),
      config_(config),
      node_id_(config.main.node_id.value_or(uuid4())),
      chunks_(chunk_limits(config)),
      delayer_(config.extensions.max_delayed_tasks) {
  WorkerPool::Hooks hooks;
  hooks.finished = [this](const QueuedTask& t, TaskOutcome o, const ipc::DonePayload* d, int w) {
    task_finished(t, o, d, w);
  };
  hooks.started = [this](const QueuedTask& t, MonoTime now) {
    task_started(t, now);
    start_late_broker_in(0);
  };
  hooks.control = [this](int, std::string_view request) { return bind_control(request); };
  pool_ = std::make_unique<WorkerPool>(loop_, launcher, pool_options(config_), std::move(hooks));

  for (const std::string& name : config_.broker_order) {
    // The sink needs the broker's own address, known only once it exists.
    auto self = std::make_shared<Broker*>(nullptr);
    auto sink = [this, self](std::string_view origin, std::string_view payload) {
      on_payload(*self, origin, payload);
    };
    std::unique_ptr<Broker> b;
    if (name == "pg_notify" && config_.pg_notify.enabled) {
      PgNotifyBrokerOptions options;
      options.config_error = [this](const Error& e) {
        if (fatal_)
          fatal_(e);
        else
          LOG_ERROR("pg_notify: not starting: " << e.message);
      };
      b = std::make_unique<PgNotifyBroker>(loop_, config_.pg_notify, sink, std::move(options));
      if (config_.pg_notify.conninfo_source.pending) late_broker_ = b.get();
    } else if (name == "socket" && config_.socket.enabled)
      b = std::make_unique<SocketBroker>(loop_, config_.socket,
                                         SocketBroker::Limits::from(config_.extensions), sink);
    if (!b) continue;
    *self = b.get();
    brokers_.push_back(std::move(b));
  }
  auto submit_fn = [this](nlohmann::json msg) {
    std::string body = dump_compact(msg);
    process(nullptr, std::move(msg), std::move(body), "");
  };
  for (const std::string& name : config_.producers.order) {
    if (name == "ScheduledProducer" && config_.producers.scheduled_enabled) {
      producers_.push_back(
          std::make_unique<ScheduledProducer>(loop_, config_.producers.schedule, submit_fn));
    } else if (name == "OnStartProducer" && config_.producers.on_start_enabled) {
      producers_.push_back(
          std::make_unique<OnStartProducer>(loop_, config_.producers.on_start, submit_fn));
    } else if (name == "ControlProducer" && config_.producers.control_enabled) {
      auto p = std::make_unique<ControlProducer>(loop_);
      control_producer_ = p.get();
      producers_.push_back(std::move(p));
    }
  }
  setup_metrics();
}

Service::~Service() {
  if (delay_timer_) loop_.cancel(delay_timer_);
  if (late_timer_) loop_.cancel(late_timer_);
}

Status Service::listen() {
  for (auto& b : brokers_)
    if (auto* s = dynamic_cast<SocketBroker*>(b.get()))
      if (auto st = s->listen(); !st) return st;
  return Ok{};
}

void Service::start() {
  if (http_) http_->start();
  pool_->start();
  for (auto& b : brokers_)
    if (b.get() != late_broker_) b->start();
  for (auto& p : producers_) p->start();
  // On-start tasks need only a worker: the libpq load of a late broker waits until the first
  // is handed out, so that it overlaps the task (and the other workers' start).
  if (late_broker_ == nullptr) {
    if (ready_) ready_();
  } else {
    start_late_broker_in(pool_->queued_count() == 0 ? 0 : kLateBrokerBound);
  }
  LOG_INFO("Dispatcherd node_id=" << node_id_ << " running forever, or until shutdown command");
}

void Service::stop(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  LOG_INFO("Received exit signal");
  if (late_timer_) loop_.cancel(late_timer_);
  late_timer_ = 0;
  late_broker_ = nullptr;
  for (auto& b : brokers_) b->stop();
  for (auto& p : producers_) p->stop();
  MonoTime now = loop_.now();
  for (Delayed& d : delayer_.abandon_all())
    LOG_WARNING("Abandoning delayed task (due to shutdown) to run in "
                << (d.due - now) << ", message=" << excerpt(d.message.body()));
  if (delay_timer_) loop_.cancel(delay_timer_);
  delay_timer_ = 0;
  pool_->shutdown(config_.extensions.shutdown_timeout_seconds, [this, done = std::move(done)] {
    if (http_) http_->stop();
    done();
  });
}

void Service::start_late_broker_in(double delay) {
  if (late_broker_ == nullptr || stopping_) return;
  const MonoTime due = loop_.now() + delay;
  if (late_timer_ && due >= late_due_) return;
  if (late_timer_) loop_.cancel(late_timer_);
  late_due_ = due;
  late_timer_ = loop_.after(delay, [this] {
    late_timer_ = 0;
    Broker* b = std::exchange(late_broker_, nullptr);
    // Main has one thread: libpq can be loaded without GnuTLS's load-time set-up. A failed
    // load is reported by the broker's start.
    (void)libpq_single_threaded();
    b->start();  // a failed conninfo check calls fatal_, which stops the service
    if (!stopping_ && ready_) ready_();
  });
}

void Service::reload(const Config& fresh) {
  pool_->resize(fresh.pool.min_workers, fresh.pool.max_workers.value_or(cpu_count()));
}

void Service::on_payload(Broker* from, std::string_view origin, std::string_view payload) {
  if (stopping_) return;
  // The common case, a well-formed task message, is read in one pass without a JSON tree.
  if (auto scanned = scan_task_message(payload)) {
    accept_task(std::move(scanned->fields), scanned->identity, payload, origin);
    expire_chunks();
    return;
  }
  auto decoded = decode_payload(payload);
  if (!decoded) {
    ++counters_.bad_messages;
    LOG_ERROR("dropping message from " << (from ? from->name() : "internal") << " channel "
                                       << origin << ": " << decoded.error().message << ": "
                                       << excerpt(payload));
    return;
  }
  nlohmann::json obj = std::move(decoded).value();
  // The worker gets the bytes as received unless main had to build the object (a bare task
  // or a reassembled chunk): main never re-encodes JSON it was given.
  auto first = payload.find_first_not_of(" \t\r\n");
  bool as_received = first != std::string_view::npos && payload[first] == '{';
  // A payload that only looks like an object but is not JSON became a bare task (§2.1): the
  // worker must get that object, not the raw bytes (which may not even be UTF-8). Its `task`
  // is the whole sanitized payload, never shorter, while a real object's values are.
  if (as_received && obj.size() == 1) {
    auto task = obj.find("task");
    if (task != obj.end() && task->is_string() &&
        task->get_ref<const std::string&>().size() >= payload.size())
      as_received = false;
  }
  if (is_chunk(obj)) {
    auto in = chunks_.ingest(obj, loop_.now());
    switch (in.outcome) {
      case ChunkAccumulator::Outcome::Incomplete:
        expire_chunks();
        return;
      case ChunkAccumulator::Outcome::Error:
        ++counters_.chunk_errors;
        LOG_ERROR("chunk from channel " << origin << " dropped: " << in.error);
        return;
      case ChunkAccumulator::Outcome::Complete:
        obj = std::move(in.message);
        as_received = false;
        break;
      case ChunkAccumulator::Outcome::NotChunk:
        break;
    }
  }
  process(from, std::move(obj), as_received ? std::string(payload) : std::string(), origin);
  expire_chunks();
}

void Service::expire_chunks() {
  for (auto& id : chunks_.expire(loop_.now()))
    LOG_ERROR("chunked message " << id << " expired before all its chunks arrived");
}

// §2.3 steps 3-8 for one decoded, assembled message.
void Service::process(Broker* from, nlohmann::json obj, std::string body, std::string_view origin) {
  if (!is_control(obj)) {
    auto fields = read_task_fields(obj);
    if (!fields) {
      ++counters_.bad_messages;
      const auto uuid = obj.find("uuid");
      LOG_ERROR("rejecting task message (uuid="
                << (uuid != obj.end() && uuid->is_string()
                        ? uuid->get<std::string>()
                        : "internal-" + std::to_string(counters_.received))
                << ") from channel " << origin << ": " << fields.error().message);
      ++counters_.received;
      return;
    }
    std::uint64_t identity = identity_hash(obj);
    if (body.empty()) body = dump_compact(obj);
    accept_task(std::move(*fields), identity, body, origin);
    return;
  }
  std::string uuid;
  if (obj.contains("uuid") && obj["uuid"].is_string())
    uuid = obj["uuid"].get<std::string>();
  else
    uuid = "internal-" + std::to_string(counters_.received);
  ++counters_.received;
  double delay = 0;
  auto fields = read_control_fields(obj);
  if (fields) delay = fields->delay;
  if (delay > 0) {
    // Kept as text until it is due.
    if (!obj.contains("uuid")) obj["uuid"] = uuid;
    if (!origin.empty()) obj["channel"] = origin;
    QueuedTask t(dump_compact(obj), uuid, origin, {});
    t.received_at = loop_.now();
    if (!delayer_.add(std::move(t), loop_.now() + delay, /*is_control=*/true)) return;  // full
    arm_delay_timer();
    return;
  }
  run_control(from, std::string(origin), obj);
}

void Service::accept_task(TaskFields fields, std::uint64_t identity, std::string_view body,
                          std::string_view origin) {
  std::string internal;
  if (!fields.uuid) internal = "internal-" + std::to_string(counters_.received);
  ++counters_.received;
  QueuedTask t(body, fields.uuid ? *fields.uuid : internal, origin, fields.task);
  t.received_at = loop_.now();
  if (fields.on_duplicate_unknown)
    LOG_WARNING("task (uuid=" << t.uuid() << ") has an unknown on_duplicate value; using parallel");
  t.timeout = fields.timeout;
  t.identity = identity;
  t.on_duplicate = fields.on_duplicate;
  if (fields.delay > 0) {
    if (!delayer_.add(std::move(t), loop_.now() + fields.delay, /*is_control=*/false)) return;
    arm_delay_timer();
    return;
  }
  pool_->submit(std::move(t));
}

void Service::arm_delay_timer() {
  auto next = delayer_.next_due();
  if (!next) return;
  if (delay_timer_ && delay_timer_at_ <= *next) return;
  if (delay_timer_) loop_.cancel(delay_timer_);
  delay_timer_at_ = *next;
  delay_timer_ = loop_.at(*next, [this] {
    delay_timer_ = 0;
    for (Delayed& d : delayer_.take_due(loop_.now())) {
      if (d.is_control) {
        nlohmann::json obj = nlohmann::json::parse(d.message.body(), nullptr, false);
        if (!obj.is_object()) continue;
        auto rt = obj.find("reply_to");  // a string or null: read_control_fields checked
        std::string reply_to = rt != obj.end() && rt->is_string() ? rt->get<std::string>() : "";
        if (!reply_to.empty())
          LOG_WARNING("Can not return reply to channel " << reply_to << " from delayed tasks");
        obj.erase("reply_to");
        run_control(nullptr, std::string(d.message.channel()), obj);
      } else {
        pool_->submit(std::move(d.message));
      }
    }
    arm_delay_timer();
  });
}

void Service::run_control(Broker* from, const std::string& origin, const nlohmann::json& obj) {
  auto fields = read_control_fields(obj);
  nlohmann::ordered_json reply;
  const auto& allowed = config_.extensions.pg_notify_control_commands;
  if (!fields) {
    ++counters_.control;
    ++counters_.bad_messages;
    LOG_ERROR("control request from channel " << origin << " refused: " << fields.error().message);
    reply = {{"error", fields.error().message}};
  } else if (from && from->name() == "pg_notify" && allowed &&
             std::find(allowed->begin(), allowed->end(), fields->command) == allowed->end()) {
    ++counters_.refused_control;
    LOG_WARNING("control command '" << fields->command << "' from channel " << origin
                                    << " refused: not in extensions.pg_notify_control_commands");
    reply = {{"error", "Control command " + fields->command + " is not allowed over pg_notify"}};
  } else {
    ++counters_.control;
    reply = run_control_command(*this, fields->command, fields->data);
  }
  reply["node_id"] = node_id_;
  // With fields refused, reply_to may itself be the wrong type: then there is nowhere to answer.
  std::string reply_to;
  if (fields)
    reply_to = fields->reply_to;
  else if (auto it = obj.find("reply_to"); it != obj.end() && it->is_string())
    reply_to = it->get<std::string>();
  if (!reply_to.empty() && from)
    from->publish(from->reply_target(origin, reply_to), dump_reply(reply));
}

std::string Service::bind_control(std::string_view request_json) {
  nlohmann::json req = nlohmann::json::parse(request_json, nullptr, false);
  if (!req.is_object() || !req.contains("command") || !req["command"].is_string())
    return dump_reply({{"error", std::string(kFailedControlTaskError)}});
  nlohmann::json data = req.value("control_data", nlohmann::json::object());
  ++counters_.control;
  return dump_reply(run_control_command(*this, req["command"].get<std::string>(), data));
}

}  // namespace dispatcherd
